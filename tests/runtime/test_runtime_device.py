"""The device-grade runtime: session options, integrity, threads, seeds, anomaly decisions, streaming,
and the promise that nothing of the workstation (torch, onnx, Pillow) is ever imported."""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from vae_edge.runtime import VAE, BundleError, RowError
from vae_edge.runtime.sessions import OPTIMIZATION_LEVELS


@pytest.fixture(scope="module")
def vae(bundle):
    return VAE.load(bundle)


# ---------------------------------------------------------------- no workstation imports
NO_TORCH_SCRIPT = r"""
import io, sys, tempfile
from pathlib import Path
import numpy as np
import vae_edge.runtime
from vae_edge.runtime import VAE, default_bundle_path, read_manifest, verify_files
from vae_edge.runtime.cli import cli

tmp = Path(tempfile.mkdtemp())
vae = VAE.load(threads=1, providers=["CPUExecutionProvider"], optimization="extended", save_optimized=tmp / "opt")
x = vae.sample(4, seed=0, temperature=0.8)
mu, logvar = vae.encode(x)
vae.decode(mu); vae.reconstruct(x); vae.interpolate(x[0], x[1], steps=3)
vae.anomaly_score(x); vae.anomaly_score(x, samples=3, seed=1)
vae.threshold(0.99); vae.threshold("p50"); vae.is_anomaly(x); vae.is_anomaly(x[0], quantile=0.999)
list(vae.score_stream(x.reshape(4, -1), batch_size=3)); list(vae.score_batches(iter(x)))
vae.normalize(x); repr(vae)
verify_files(default_bundle_path(), read_manifest(default_bundle_path()))
VAE.load(precision="int8").sample(2, seed=1)

np.save(tmp / "x.npy", x)
np.save(tmp / "z.npy", mu)
np.save(tmp / "pair.npy", x[:2])
commands = [
    ["info"], ["info", "--json"],
    ["sample", "-n", "2", "--seed", "0", "--out", str(tmp / "s.npy")],
    ["reconstruct", str(tmp / "x.npy"), "--out", str(tmp / "r.npy")],
    ["encode", str(tmp / "x.npy"), "--out", str(tmp / "mu.npy"), "--logvar", str(tmp / "lv.npy")],
    ["decode", str(tmp / "z.npy"), "--out", str(tmp / "d.npy")],
    ["score", str(tmp / "x.npy"), "--out", str(tmp / "sc.npy")],
    ["score", str(tmp / "x.npy"), "--stream"],
    ["score", "--stream", "--batch-size", "2"],
    ["interpolate", str(tmp / "pair.npy"), "--out", str(tmp / "i.npy")],
]
out = sys.stdout
for args in commands:
    sys.stdin = io.StringIO("\n".join(",".join(map(str, row)) for row in x.reshape(4, -1)) + "\n")
    sys.stdout = io.StringIO()
    cli.main(args[:1] + (["--precision", "fp32"] if args[0] not in ("info",) else []) + args[1:], standalone_mode=False)
sys.stdout = out
bad = [m for m in ("torch", "onnx", "PIL", "onnxscript", "sklearn", "vae_edge.trainer", "vae_edge.export", "vae_edge.models") if m in sys.modules]
print("imported:" + ",".join(bad))
"""


def test_every_public_call_and_command_stays_free_of_torch_onnx_and_pillow():
    # A fresh interpreter: this test process has torch loaded already.
    out = subprocess.run([sys.executable, "-c", NO_TORCH_SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "imported:", out.stdout


# ---------------------------------------------------------------- session options
def test_threads_providers_and_optimisation_levels_are_passed_through(bundle, vae, test_digits):
    want = vae.reconstruct(test_digits)
    for level in OPTIMIZATION_LEVELS:
        other = VAE.load(bundle, threads=2, providers=["CPUExecutionProvider"], optimization=level)
        assert other.session("decoder").get_providers() == ["CPUExecutionProvider"]
        np.testing.assert_allclose(other.reconstruct(test_digits), want, atol=1e-4)
    for provider in ort.get_available_providers():  # any provider this onnxruntime offers, by name
        assert VAE.load(bundle, providers=[provider]).sample(1, seed=0).shape == (1, 1, 8, 8)
    with_options = VAE.load(bundle, providers=[("CPUExecutionProvider", {})])
    np.testing.assert_array_equal(with_options.sample(3, seed=2), vae.sample(3, seed=2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"providers": ["NoSuchExecutionProvider"]}, "'NoSuchExecutionProvider' is not an onnxruntime execution provider; this onnxruntime offers .*CPUExecutionProvider"),
        ({"providers": ["CUDAExecutionProvider"] if "CUDAExecutionProvider" not in ort.get_available_providers() else ["TensorrtExecutionProvider"]}, "is not built into this onnxruntime"),
        ({"providers": []}, "non-empty list"),
        ({"providers": [3]}, "provider name or"),
        ({"providers": {"CPUExecutionProvider": {}}}, "non-empty list"),
        ({"optimization": "max"}, "optimization: expected one of disabled, basic, extended, all, got 'max'"),
        ({"optimization": 99}, "optimization"),
        ({"threads": 0}, "threads"),
        ({"threads": 2.5}, "threads"),
        ({"precision": None}, "precision None"),
        ({"precision": ["fp32"]}, "precision"),
        ({"save_optimized": ""}, "save_optimized"),
    ],
)
def test_bad_session_options_are_refused_naming_them(bundle, kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAE.load(bundle, **kwargs)


def test_the_optimised_graphs_can_be_saved_and_run_as_they_are(bundle, tmp_path, test_digits):
    out = tmp_path / "optimised"
    vae = VAE.load(bundle, precision="int8", optimization="extended", save_optimized=out)
    assert sorted(p.name for p in out.iterdir()) == ["decoder.int8.onnx", "encoder.int8.onnx", "score.int8.onnx"]  # no temporary files left
    enc = ort.InferenceSession(str(out / "encoder.int8.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(out / "decoder.int8.onnx"), providers=["CPUExecutionProvider"])
    x = (test_digits[:8] / 16.0).astype(np.float32)
    mu = enc.run(None, {"x": x})[0]
    np.testing.assert_allclose(mu, vae.encode(test_digits[:8])[0], atol=1e-5)
    np.testing.assert_allclose(dec.run(None, {"z": mu})[0] * 16.0, vae.reconstruct(test_digits[:8]), atol=1e-4)
    # Optimising removes nodes (e.g. fuses MatMul + Add), so the saved graph is the optimised one.
    unoptimised = tmp_path / "plain"
    VAE.load(bundle, precision="int8", optimization="disabled", save_optimized=unoptimised)
    assert len(dec.get_outputs()) == 1 and (out / "decoder.int8.onnx").read_bytes() != (unoptimised / "decoder.int8.onnx").read_bytes()
    with pytest.raises(ValueError, match="is the bundle folder"):
        VAE.load(bundle, save_optimized=bundle)


# ---------------------------------------------------------------- integrity
def _edit_manifest(folder, edit):
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))


def test_every_listed_file_is_checked_not_only_the_loaded_variant(bundle_copy):
    data = bytearray((bundle_copy / "decoder.int8.onnx").read_bytes())
    data[-10] ^= 0x01  # one bit, same size
    (bundle_copy / "decoder.int8.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"decoder\.int8\.onnx: sha256 does not match"):
        VAE.load(bundle_copy, precision="fp32")


@pytest.mark.parametrize(
    "name, match",
    [
        ("/etc/passwd", "points outside the bundle folder"),
        ("../decoder.onnx", "points outside the bundle folder"),
        ("sub/decoder.onnx", "points outside the bundle folder"),
        ("..\\decoder.onnx", "points outside the bundle folder"),
        ("decoder.onnx\0", "points outside the bundle folder"),
        (".", "points outside the bundle folder"),
        ("", "invalid name"),
    ],
)
def test_manifest_paths_cannot_leave_the_bundle_folder(bundle_copy, name, match):
    def edit(m):
        m["files"][name] = m["files"].pop("decoder.onnx")
        m["variants"]["fp32"]["decoder"] = name

    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError, match=match):
        VAE.load(bundle_copy)


def test_a_link_out_of_the_bundle_is_refused_even_with_the_right_hash(bundle_copy, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    outside.write_bytes((bundle_copy / "decoder.onnx").read_bytes())
    (bundle_copy / "decoder.onnx").unlink()
    os.symlink(outside, bundle_copy / "decoder.onnx")
    with pytest.raises(BundleError, match=r"decoder\.onnx: is a link to .*elsewhere\.onnx, outside the bundle folder"):
        VAE.load(bundle_copy)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.pop("schema"), "schema None is not supported"),
        (lambda m: m.update(schema="vae-edge/bundle/2"), r"schema 'vae-edge/bundle/2' is not supported \(expected 'vae-edge/bundle/1'\)"),
        (lambda m: m["files"]["encoder.onnx"].update(sha256="0" * 64), r"encoder\.onnx: sha256 does not match"),
        (lambda m: m["files"]["encoder.onnx"].pop("sha256"), r"files\['encoder.onnx'\] must give sha256"),
        (lambda m: m["files"]["encoder.onnx"].update(bytes=1), r"encoder\.onnx: \d+ bytes, the manifest says 1"),
        (lambda m: m["files"].pop("encoder.onnx"), "which the files list lacks"),
        (lambda m: m["files"].update({"extra.onnx": {"sha256": "0" * 64, "bytes": 3}}), r"extra\.onnx: missing from the bundle"),
    ],
)
def test_schema_hashes_and_file_list_are_checked_at_load(bundle_copy, edit, match):
    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError, match=match):
        VAE.load(bundle_copy)


# ---------------------------------------------------------------- threads and seeds
def _every_method(vae, x, i):
    """Every public method on one chunk ``x``; ``i`` varies the seeds."""
    mu, logvar = vae.encode(x)
    return [
        mu, logvar, vae.decode(mu), vae.reconstruct(x), vae.sample(3, seed=i), vae.interpolate(x[0], x[1], steps=4),
        vae.anomaly_score(x), vae.anomaly_score(x, samples=3, seed=i), vae.is_anomaly(x), np.float64(vae.threshold(0.95)),
        np.array(list(vae.score_stream(x.reshape(len(x), -1), batch_size=3))), np.concatenate(list(vae.score_batches(x, 5))),
        vae.normalize(x),
    ]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_one_vae_shared_by_sixteen_threads_matches_serial_calls(bundle, test_digits, precision):
    vae = VAE.load(bundle, precision=precision)
    chunks = [test_digits[i : i + 8] for i in range(0, 64, 8)]
    serial = [_every_method(vae, c, i) for i, c in enumerate(chunks)]
    jobs = [i for _ in range(4) for i in range(len(chunks))]  # each chunk four times, interleaved
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: (i, _every_method(vae, chunks[i], i)), jobs))
    for i, got in results:
        for g, want in zip(got, serial[i]):
            np.testing.assert_array_equal(g, want)


def test_seeds_make_every_random_result_repeatable(bundle, vae, test_digits):
    again = VAE.load(bundle)  # a second object: nothing depends on per-object state
    np.testing.assert_array_equal(vae.sample(6, seed=11), again.sample(6, seed=11))
    assert not np.array_equal(vae.sample(6, seed=11), vae.sample(6, seed=12))
    np.testing.assert_array_equal(vae.sample(4, seed=5, temperature=0.5), again.sample(4, seed=5, temperature=0.5))
    mc = vae.anomaly_score(test_digits[:8], samples=5, seed=3)
    np.testing.assert_array_equal(mc, again.anomaly_score(test_digits[:8], samples=5, seed=3))
    assert not np.array_equal(mc, vae.anomaly_score(test_digits[:8], samples=5, seed=4))
    np.testing.assert_array_equal(vae.anomaly_score(test_digits[:8]), again.anomaly_score(test_digits[:8]))  # no seed needed
    unseeded = [vae.sample(2) for _ in range(2)]
    assert not np.array_equal(*unseeded)  # seed=None: fresh randomness
    with pytest.raises(ValueError, match="seed"):
        vae.anomaly_score(test_digits[:2], seed=-1)  # checked even without samples=


# ---------------------------------------------------------------- anomaly decisions
def test_is_anomaly_uses_the_calibration_of_the_loaded_precision(bundle, vae, test_digits):
    q = vae.manifest["variants"]["fp32"]["anomaly_quantiles"]
    assert vae.threshold() == q["p99"] and vae.threshold(0.999) == q["p99.9"] and vae.threshold("p50") == q["p50"]
    int8 = VAE.load(bundle, precision="int8")
    assert int8.threshold(0.9) == int8.manifest["variants"]["int8"]["anomaly_quantiles"]["p90"]
    noise = np.random.default_rng(0).uniform(0, 16, size=(32, 1, 8, 8))
    flags = vae.is_anomaly(np.concatenate([test_digits, noise]))
    assert flags.dtype == bool and flags.shape == (64 + 32,)
    assert flags[64:].mean() > 0.9 and flags[:64].mean() < 0.2
    np.testing.assert_array_equal(vae.is_anomaly(test_digits, quantile=0.5), vae.anomaly_score(test_digits) > q["p50"])
    assert vae.is_anomaly(noise[0]).shape == () and vae.is_anomaly(np.zeros((0, 1, 8, 8))).shape == (0,)


@pytest.mark.parametrize(
    "quantile, match",
    [
        (0.98, r"quantile 0.98 is not calibrated in this bundle; it stores p50 \(0.5\), p90 \(0.9\), p95 \(0.95\), p99 \(0.99\), p99.9 \(0.999\)"),
        ("p42", "quantile 'p42' is not calibrated"),
        (99, r"expected a fraction in \(0, 1\)"),
        (0.0, "fraction"),
        (float("nan"), "fraction"),
        (True, "fraction"),
        (None, "fraction"),
    ],
)
def test_a_quantile_that_is_not_stored_is_refused_listing_those_that_are(vae, quantile, match):
    with pytest.raises(ValueError, match=match):
        vae.threshold(quantile)
    with pytest.raises(ValueError, match=match):
        vae.is_anomaly(np.zeros((1, 1, 8, 8)), quantile=quantile)


def test_a_bundle_without_calibration_says_so(bundle_copy):
    _edit_manifest(bundle_copy, lambda m: m["variants"]["fp32"].pop("anomaly_quantiles"))
    vae = VAE.load(bundle_copy)  # old or uncalibrated bundles still load and score
    assert vae.anomaly_score(np.zeros((2, 1, 8, 8))).shape == (2,)
    with pytest.raises(ValueError, match="variant 'fp32' has no anomaly calibration"):
        vae.is_anomaly(np.zeros((2, 1, 8, 8)))


# ---------------------------------------------------------------- streaming
def test_score_stream_gives_one_score_per_row_as_anomaly_score_does(vae, test_digits):
    want = vae.anomaly_score(test_digits)
    flat = (row.tolist() for row in test_digits.reshape(len(test_digits), -1))  # a generator of plain lists
    got = list(vae.score_stream(flat, batch_size=10))
    assert len(got) == len(test_digits) and all(isinstance(s, float) for s in got)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(list(vae.score_stream(test_digits, batch_size=1)), want, rtol=1e-6)  # rows of the sample shape
    sizes = [len(b) for b in vae.score_batches(iter(test_digits), batch_size=25)]
    assert sizes == [25, 25, 14]
    assert list(vae.score_stream([])) == []


def test_score_stream_is_lazy_so_an_endless_source_works(vae, test_digits):
    def endless():
        while True:
            yield from test_digits

    stream = vae.score_stream(endless(), batch_size=16)
    first = [next(stream) for _ in range(100)]
    np.testing.assert_allclose(first[64:], vae.anomaly_score(test_digits[:36]), rtol=1e-6)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros(63), r"row 5: expected 64 numbers or shape \[1, 8, 8\], got shape \[63\]"),
        (np.full(64, np.nan), "row 5: contains NaN or Inf"),
        (["a"] * 64, "row 5: expected a numeric array"),
        ([[1, 2], [3]], "row 5: expected 64 numbers, got an irregular sequence"),
        (None, "row 5: expected 64 numbers"),
    ],
)
def test_a_bad_row_is_named_after_the_rows_before_it_are_scored(vae, test_digits, bad, match):
    rows = list(test_digits[:5].reshape(5, -1)) + [bad] + list(test_digits[5:9].reshape(4, -1))
    got = []
    with pytest.raises(RowError, match=match) as info:
        for score in vae.score_stream(rows, batch_size=4):
            got.append(score)
    assert info.value.row == 5 and isinstance(info.value, ValueError)
    np.testing.assert_allclose(got, vae.anomaly_score(test_digits[:5]), rtol=1e-6)


def test_score_stream_checks_its_arguments_at_once(vae):
    for batch_size in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="batch_size"):
            vae.score_stream([], batch_size=batch_size)
    with pytest.raises(ValueError, match="rows: expected an iterable of samples, got int"):
        vae.score_stream(5)


def test_bad_rows_nan_keeps_the_stream_going_one_score_per_row(vae, test_digits, caplog):
    rows = list(test_digits[:10].reshape(10, -1))
    rows[2], rows[5], rows[7] = None, rows[5] * np.nan, rows[7][:3]
    got = np.array(list(vae.score_stream(rows, batch_size=4, bad_rows="nan")))
    bad = np.isin(np.arange(10), [2, 5, 7])
    assert np.isnan(got[bad]).all()
    np.testing.assert_allclose(got[~bad], vae.anomaly_score(test_digits[:10][~bad]), rtol=1e-6)
    assert {r.getMessage().split(":")[0] for r in caplog.records if r.levelname == "WARNING"} == {"row 2", "row 5", "row 7"}
    with pytest.raises(ValueError, match="bad_rows: expected 'raise' or 'nan', got 'skip'"):
        vae.score_stream(rows, bad_rows="skip")


def test_sessions_run_the_bytes_that_were_hashed(bundle_copy):
    """verify_files hands back the bytes it hashed and the session is built from them: each graph is read
    once, and a file swapped after the check is not what runs (a later load refuses it)."""
    import hashlib

    from vae_edge.runtime import read_manifest, verify_files
    from vae_edge.runtime.sessions import open_session, session_options

    manifest = read_manifest(bundle_copy)
    kept = verify_files(bundle_copy, manifest, keep=("decoder.onnx",))
    assert list(kept) == ["decoder.onnx"]
    assert hashlib.sha256(kept["decoder.onnx"]).hexdigest() == manifest["files"]["decoder.onnx"]["sha256"]
    (bundle_copy / "decoder.onnx").write_bytes(b"swapped after the check")
    session = open_session(bundle_copy / "decoder.onnx", kept["decoder.onnx"], session_options(1), ["CPUExecutionProvider"], None)
    assert [o.name for o in session.get_outputs()] == ["x_mean"]
    with pytest.raises(BundleError, match=r"decoder\.onnx: .*(truncated or replaced|sha256 does not match)"):
        verify_files(bundle_copy, manifest, keep=("decoder.onnx",))


def test_a_stream_scores_out_of_range_rows_and_goes_on(vae, test_digits):
    """The anomaly is never refused: a reading beyond the data's range (0..16) scores high, in order."""
    rows = list(test_digits[:6].reshape(6, -1))
    rows[3] = np.full(64, 40.0)
    got = np.array(list(vae.score_stream(rows, batch_size=1)))
    assert len(got) == 6 and np.isfinite(got).all()
    assert got[3] > vae.threshold("p99.9") and got[3] >= 1000
    np.testing.assert_allclose(np.delete(got, 3), vae.anomaly_score(np.delete(test_digits[:6], 3, axis=0)), rtol=1e-6)
