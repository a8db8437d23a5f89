"""The timing core (runtime/benchmark.py) and `vae-run bench`: structure of results, never timing values."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from vae_edge.runtime import VAE
from vae_edge.runtime.benchmark import Effort, bench_bundle, decode_overhead, format_seconds, measure, overhead_calls
from vae_edge.runtime.cli import cli as run_main

TINY = Effort(rounds=2, round_seconds=0.002, warmup_seconds=0.0, max_calls=50)


def test_measure_times_every_candidate_in_interleaved_rounds():
    order = []
    timings = measure({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, TINY)
    assert list(timings) == ["a", "b"]
    for t in timings.values():
        assert t.rounds == 2 and 2 <= t.calls <= 2 * TINY.max_calls
        assert 0 < t.min_s <= t.median_s <= t.p99_s
        assert isinstance(t.noisy, bool) and t.spread >= 0
        assert set(t.to_dict()) == {"median_s", "p99_s", "min_s", "calls", "rounds", "spread", "noisy"}
    # warm-up a, warm-up b, round 1 a then b, round 2 b then a: neither always goes first
    blocks = [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]
    assert blocks == ["a", "b", "a", "b", "a"], blocks


def test_measure_and_effort_refuse_bad_arguments():
    with pytest.raises(ValueError, match="no candidates"):
        measure({}, TINY)
    with pytest.raises(ValueError, match="rounds"):
        Effort(rounds=1)


def test_bench_bundle_reports_every_variant_op_and_batch(bundle):
    result = bench_bundle(bundle, batch_sizes=(1, 3), threads=1, effort=TINY)
    manifest = json.loads((bundle / "manifest.json").read_text())
    variants = list(manifest["variants"])
    assert {(r["variant"], r["op"], r["batch"]) for r in result["rows"]} == {(v, op, b) for v in variants for op in ("encode", "decode", "score") for b in (1, 3)}
    for r in result["rows"]:
        assert r["per_second"] == pytest.approx(r["batch"] / r["median_s"])
    assert [o["variant"] for o in result["overhead"]] == variants
    assert all(o["ratio"] == pytest.approx(o["runtime_s"] / o["bare_s"]) for o in result["overhead"])
    for v in variants:
        files = manifest["variants"][v]
        assert result["bytes"][v] == sum(manifest["files"][files[g]]["bytes"] for g in ("encoder", "decoder", "score"))
    machine = result["machine"]
    assert machine["cores"] >= 1 and len(machine["load_average_1_5_15min"]) == 3 and machine["onnxruntime"]
    json.dumps(result)  # plain data throughout


def test_bench_bundle_refuses_bad_input(bundle):
    with pytest.raises(ValueError, match="precision 'nope'"):
        bench_bundle(bundle, variants=["nope"], effort=TINY)
    with pytest.raises(ValueError, match="batch size"):
        bench_bundle(bundle, batch_sizes=(0,), effort=TINY)


def test_decode_overhead_compares_the_same_session(bundle):
    """The bare call runs the very decoder session the VAE runs (the int8 one here, not a fresh fp32
    session), on the same inputs: the ratio measures the runtime's own overhead and nothing else."""
    vae = VAE.load(bundle, precision="int8", threads=1)
    o = decode_overhead(vae, effort=TINY)
    assert o["batch"] == 1 and o["bare_s"] > 0 and o["runtime_s"] > 0 and isinstance(o["noisy"], bool)
    assert o["ratio"] == o["runtime_s"] / o["bare_s"]
    session, calls = overhead_calls(vae)
    assert session is vae.session("decoder") and set(calls) == {"bare", "runtime"}
    (bare,), runtime = calls["bare"](), calls["runtime"]()
    np.testing.assert_array_equal(vae.denormalize(bare), runtime)  # the same graph on the same z
    fp32_session, fp32_calls = overhead_calls(VAE.load(bundle, threads=1))
    assert fp32_session is not session
    assert not np.array_equal(fp32_calls["bare"]()[0], bare)  # so the equality above tells the variants apart


def test_hot_path_gives_what_a_bare_run_gives_and_fresh_arrays(bundle):
    """The decode fast path (direct C++ call, in-place rescaling, no copy of float32 input) changes nothing
    a user sees: same values as session.run, new arrays each call, the input untouched, other dtypes too."""
    vae = VAE.load(bundle, threads=1)
    z = np.random.default_rng(1).standard_normal((5, vae.latent_dim)).astype(np.float32)
    z_before = z.copy()
    bare = vae.session("decoder").run(None, {"z": z})[0]
    pre = vae.manifest["data"]["preprocessing"]
    first, second = vae.decode(z), vae.decode(z)
    np.testing.assert_allclose(first, bare * pre["scale"] + pre["offset"], rtol=1e-6)
    assert first is not second and not np.shares_memory(first, second)
    np.testing.assert_array_equal(z, z_before)
    np.testing.assert_allclose(vae.decode(z.astype(np.float64)), first, rtol=1e-6)
    np.testing.assert_allclose(vae.decode(np.asfortranarray(z)), first, rtol=1e-6)
    np.testing.assert_allclose(vae.decode(z.tolist()), first, rtol=1e-6)


def test_format_seconds_picks_a_readable_unit():
    assert format_seconds(4.81e-6) == "4.81 us"
    assert format_seconds(0.0123) == "12.3 ms"
    assert format_seconds(2.5) == "2.5 s"
    assert format_seconds(3e-10) == "0.3 ns"


# ---------------------------------------------------------------- vae-run bench
def test_vae_run_bench_prints_a_table_and_writes_json(tmp_path, bundle):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(run_main, ["bench", str(bundle), "--quick", "--threads", "1", "--batch", "2", "--precision", "int8", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "int8" in result.output and "decode" in result.output and "score" in result.output and "overhead int8" in result.output
    data = json.loads(out.read_text())
    assert {(r["variant"], r["op"], r["batch"]) for r in data["rows"]} == {("int8", "encode", 2), ("int8", "decode", 2), ("int8", "score", 2)}
    assert data["threads"] == 1


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--batch", "0"], "--batch"),
        (["--precision", "nope"], "precision 'nope' is not in this bundle"),
        (["--json", "out.txt"], ".json"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_vae_run_bench_bad_input_exits_2(args, fragment):
    result = CliRunner().invoke(run_main, ["bench", "--quick", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and fragment in result.output


def test_vae_run_bench_refuses_json_inside_the_bundle(bundle_copy):
    result = CliRunner().invoke(run_main, ["bench", str(bundle_copy), "--quick", "--json", str(bundle_copy / "r.json")])
    assert result.exit_code == 2 and "inside the bundle folder" in result.output


def test_vae_run_bench_stays_free_of_torch_and_onnx(tmp_path):
    """The timing core is part of the device runtime: numpy + onnxruntime only, also while it runs."""
    import subprocess
    import sys

    code = """
import sys
from vae_edge.runtime.cli import main
sys.argv = ["vae-run", "bench", "--quick", "--batch", "1", "--precision", "int8"]
try:
    main()
except SystemExit as exc:
    assert exc.code == 0, exc.code
print("IMPORTED:" + ",".join(m for m in ("torch", "onnx", "PIL", "onnxscript", "sklearn") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip().splitlines()[-1] == "IMPORTED:", out.stdout
