"""The fallback search, int8-weights and --quantize auto, on a model built to fail plain int8: its first
encoder layer has an outlier weight range (a column of huge weights on a pixel that is 0 in every digit,
so PyTorch's outputs are unchanged while per-tensor and per-channel int8 scales are ruined)."""

import json
import shutil
from pathlib import Path

import onnx
import pytest

from vae_edge.export.bundle import ExportOptions, export_bundle
from vae_edge.export.cli import cli as export_main
from vae_edge.runtime import VAE
from vae_edge.runtime.benchmark import Effort
from vae_edge.runtime.cli import cli as run_main

from helpers import invoke

FAST = Effort(rounds=2, round_seconds=0.002, warmup_seconds=0.0, max_calls=5)


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory, model_path) -> Path:
    from vae_edge.models.checkpoint import read_checkpoint, save_checkpoint

    ckpt = read_checkpoint(model_path)
    state = dict(ckpt["state_dict"])
    weight = state["encoder.body.0.weight"].clone()
    weight[:, 0] = 1000.0  # pixel 0 (top left) is 0 in every digit: the float model is unchanged
    state["encoder.body.0.weight"] = weight
    path = tmp_path_factory.mktemp("outlier") / "model.pt"
    save_checkpoint(path, {**ckpt, "state_dict": state})
    return path


def np_file(folder: Path, array) -> Path:
    import numpy as np

    path = folder / "x.npy"
    np.save(path, array)
    return path


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def test_the_search_restores_a_variant_that_fails_without_it(outlier_model, tmp_path):
    out = tmp_path / "searched"
    export_bundle(outlier_model, out, ExportOptions(variants=("int8", "int8-weights"), latency=None))
    m = _manifest(out)
    for variant in ("int8", "int8-weights"):
        entry = m["variants"][variant]
        search = entry["search"]
        steps = search["steps"]
        # Step 0 is the variant as configured, judged as the gate judges it: it fails without the search.
        assert steps[0]["step"] == "as configured" and not steps[0]["holds"] and steps[0]["recon_nll_rel_change"] > 0.1
        assert search["holds"] and steps[-1]["holds"]
        # The most damaging node, the outlier layer, is the one kept in float; the others stay quantized.
        assert search["ranking"][0]["graph"] == "encoder"
        kept = search["kept_in_float"]
        assert len(kept["encoder"]) == 1 and kept["decoder"] == []
        # The figure of the step that held is the one the gate checked, against the same limit.
        assert steps[-1]["recon_nll_rel_change"] == pytest.approx(entry["accuracy"]["recon_nll_rel_change"], abs=1e-12)
        assert steps[-1]["limit"] == m["quantization"]["tolerance"] == 0.02
        assert entry["accuracy"]["passed"] is True
    graph = onnx.load(str(out / "encoder.int8.onnx"))
    assert {n.op_type for n in graph.graph.node} >= {"MatMul", "MatMulInteger"}  # one layer float, the rest int8
    # int8-weights: int8 on disk behind DequantizeLinear, folded to float at load (the contract's session config).
    graph = onnx.load(str(out / "decoder.int8-weights.onnx"))
    assert any(i.data_type == onnx.TensorProto.INT8 for i in graph.graph.initializer)
    assert "DequantizeLinear" in {n.op_type for n in graph.graph.node}
    VAE.load(out, precision="int8-weights", save_optimized=tmp_path / "optimised")
    folded = onnx.load(str(tmp_path / "optimised" / "decoder.int8-weights.onnx"))
    assert "DequantizeLinear" not in {n.op_type for n in folded.graph.node}  # float compute, as fp32's


def test_an_explicit_variant_out_of_reach_fails_naming_the_best_candidate_and_keeps_the_earlier_bundle(outlier_model, bundle, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    before = (out / "manifest.json").read_bytes()
    result = invoke(export_main, [outlier_model, "--out", out, "--quantize", "int8", "--search-budget", "0", "--no-latency"])
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: export failed, nothing written") and "int8 cannot be brought within its accuracy gate" in last
    assert "best candidate found: as configured: reconstruction NLL +" in last and "(limit 2 %)" in last and "budget 0 s" in last and "time budget spent" in last
    assert (out / "manifest.json").read_bytes() == before


def test_auto_leaves_out_what_misses_its_gate_and_recommends_a_pair_the_runtime_runs(outlier_model, tmp_path, test_digits):
    out = tmp_path / "auto"
    export_bundle(outlier_model, out, ExportOptions(variants=("auto",), search_budget_s=0, latency=None, recommend_effort=FAST))
    m = _manifest(out)
    left = m["quantization"]["left_out"]
    assert {"int8", "int8-static", "int8-weights"} <= set(left)  # no time to search: each misses as built
    assert all("misses the accuracy gate" in v["reason"] and not v["search"]["holds"] for v in left.values())
    assert not any((out / f"encoder.{v}.onnx").exists() for v in left)
    recommended = m["quantization"]["recommended"]
    auto = m["variants"]["auto"]
    for graph in ("encoder", "decoder"):
        made_by = auto["from"][graph]
        assert made_by in m["variants"] and made_by not in left
        assert auto[graph] == m["variants"][made_by][graph] == (f"{graph}.onnx" if made_by == "fp32" else f"{graph}.{made_by}.onnx")
        candidates = recommended["graphs"][graph]["candidates"]
        assert set(candidates) == set(m["variants"]) - {"auto"}
        assert candidates[made_by]["eligible"] and candidates[made_by]["bytes"] == (out / auto[graph]).stat().st_size
        assert made_by == "fp32"  # --no-latency: the fixed preference, int8-weights left out
    assert recommended["basis"] == "fixed"
    assert auto["accuracy"]["passed"] is True
    vae = VAE.load(out, precision="auto")
    assert vae.precision == "auto" and vae.reconstruct(test_digits[:4]).shape == (4, *vae.shape)
    result = invoke(run_main, ["info", str(out)])
    assert result.exit_code == 0 and "recommended encoder" in result.output and "left out   int8:" in result.output
    assert "ready      decoder.onnx:" in result.output and "nnapi" in result.output
    result = invoke(run_main, ["reconstruct", str(out), "--precision", "auto", "--out", tmp_path / "r.npy", np_file(tmp_path, test_digits[:3])])
    assert result.exit_code == 0, result.output


def test_precision_auto_runs_fp32_where_a_bundle_recommends_nothing(bundle):
    assert VAE.load(bundle, precision="auto").precision == "fp32"
