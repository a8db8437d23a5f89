"""bench/: the side-by-side benchmark's own pieces (FLOP counting, the 28x28 digits IDX maker, the LiteRT join)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner


def test_bench_counts_flops_from_the_graph_shapes(bundle):
    """bench/flops.py: what the fraction of the matmul peak rests on (2*M*N*K per product, batch set)."""
    from bench.flops import graph_flops

    manifest = json.loads((bundle / "manifest.json").read_text())
    config = manifest["model"]["config"]
    d, (h,), k = int(np.prod(config["input_shape"])), config["hidden_dims"], config["latent_dim"]
    for variant in manifest["variants"]:
        files = manifest["variants"][variant]
        assert graph_flops(bundle / files["decoder"], 32) == 2 * 32 * (k * h + h * d)
        assert graph_flops(bundle / files["encoder"], 32) == 2 * 32 * (d * h + 2 * h * k)


def test_make_digits28_idx_writes_the_file_and_takes_help_as_help(tmp_path, monkeypatch):
    from bench.make_digits28_idx import cli as make_idx

    from vae_edge.trainer.readers import read_idx

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(make_idx, ["--help"])
    assert result.exit_code == 0 and "DEST" in result.output
    assert list(tmp_path.iterdir()) == []  # `--help` used to be taken as the file name and written
    result = CliRunner().invoke(make_idx, [str(tmp_path / "d.idx.gz")])
    assert result.exit_code == 0, result.output
    raw = read_idx(tmp_path / "d.idx.gz")
    assert raw.x.shape == (1797, 1, 28, 28) and raw.value_range == (0.0, 255.0)


def test_litert_side_by_side_is_skipped_with_a_reason_without_its_environment(tmp_path, model_path, bundle):
    from bench.sidebyside import litert_side_by_side

    got = litert_side_by_side(model_path, bundle, tmp_path, python=tmp_path / "no-venv" / "python", quick=True)
    assert "no LiteRT environment" in got["skipped"] and "make bench" in got["skipped"]


def test_pytorch_rows_are_chained_to_litert_through_the_runtime(tmp_path, model_path):
    """bench/sidebyside.py: PyTorch timed beside the runtime in one process, LiteRT beside it in another;
    the ratio to LiteRT goes through the runtime's fp32 timed in both. The weights file needs no torch."""
    from bench.sidebyside import joined_rows, write_weights

    weights = np.load(write_weights(model_path, tmp_path / "w.npz"))
    config = json.loads(str(weights["config.json"]))
    assert config["arch"] == "mlp" and weights["decoder.out.weight"].shape[1] == config["hidden_dims"][-1]
    litert = {"rows": [
        {"engine": "runtime", "op": "decode", "batch": 1, "median_s": 6e-6, "p99_s": 7e-6, "noisy": False},
        {"engine": "litert-fp32", "op": "decode", "batch": 1, "median_s": 3e-6, "p99_s": 4e-6, "noisy": False},
    ]}
    here = {"rows": [
        {"engine": "fp32", "op": "decode", "batch": 1, "median_s": 5e-6, "p99_s": 6e-6},
        {"engine": "pytorch", "op": "decode", "batch": 1, "median_s": 20e-6, "p99_s": 30e-6},
    ]}
    rows = {r["engine"]: r for r in joined_rows(litert, here)}
    assert rows["runtime"]["vs_litert_fp32"] == pytest.approx(2.0) and rows["litert-fp32"]["vs_litert_fp32"] == pytest.approx(1.0)
    # 4x the runtime here, the runtime 2x LiteRT there: 8x LiteRT, and marked as chained
    assert rows["pytorch"]["vs_litert_fp32"] == pytest.approx(8.0) and rows["pytorch"]["chained"] is True
    assert "torchscript" not in rows  # not timed here: no row rather than a made-up one


def test_trainer_vs_reference_refuses_a_negative_cut_seed_in_one_line(monkeypatch, capsys):
    """--cut-seed seeds numpy's generator: a negative one was numpy's traceback, after torch's import."""
    from bench.trainer_vs_reference import main

    for bad in ("-1", "x"):
        monkeypatch.setattr("sys.argv", ["trainer_vs_reference.py", "--cut-seed", bad])
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1] == f"trainer_vs_reference.py: error: argument --cut-seed: expected an integer >= 0, got {bad}"


def test_a_bundles_iw_nll_uses_its_prior_and_agrees_with_pytorchs(vamp_bundle, test_digits):
    # bench/trainer_vs_reference.py's bundle figure, through the runtime and VAE.log_prior, on a VampPrior
    # bundle: within Monte-Carlo noise of PyTorch's evaluate_iwae (K = 100, 32 digits: 0.002 to 0.065 nats
    # apart over seeds 0-2 when measured; with the N(0, I) formula for p(z) it came out 2.8 nats above).
    import torch

    from bench.trainer_vs_reference import bundle_iwae_nll
    from vae_edge.models import load_model
    from vae_edge.trainer.evaluation import evaluate_iwae

    model_path, bundle = vamp_bundle
    x = test_digits[:32]
    torch_nll = evaluate_iwae(load_model(model_path), torch.from_numpy((x / 16.0).astype(np.float32)), 100)
    assert abs(bundle_iwae_nll(bundle, x, 100, "fp32") - torch_nll) < 0.3


def test_ort_floor_times_the_graph_it_was_given_through_the_c_api(bundle, tmp_path):
    """bench/ort_floor.c binds the decoder's input and output by name and shape through onnxruntime's
    C API: its output for its fixed input is the Python session's (so the table positions it uses are right)."""
    import shutil
    import subprocess

    from bench.ort_floor import build, library

    from vae_edge.runtime import VAE

    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler on this machine: bench/ort_floor.c is not built (the benchmark is optional)")
    binary = build(tmp_path / "ort_floor")
    vae = VAE.load(bundle)
    session = vae.session("decoder")
    latent = vae.latent_dim
    z = (0.01 * (np.arange(2 * latent) % 17)).astype(np.float32).reshape(2, latent)  # the program's input
    want = session.run(None, {session.get_inputs()[0].name: z})[0]
    dims = "x".join(map(str, want.shape))
    done = subprocess.run([str(binary), str(library()), str(bundle / "decoder.onnx"), session.get_inputs()[0].name, f"2x{latent}",
                           session.get_outputs()[0].name, dims, "20", "3"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["rounds"] == 3 and result["reps"] == 20 and 0 < result["min_us"] <= result["median_us"]
    assert result["first_output"] == pytest.approx(float(want.reshape(-1)[0]), rel=1e-6)
    bad = subprocess.run([str(binary), str(library()), str(bundle / "decoder.onnx"), "no-such-input", f"2x{latent}", session.get_outputs()[0].name, dims, "1", "1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: ") and len(bad.stderr.splitlines()) == 1
