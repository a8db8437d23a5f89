"""The text bundle: three loop-free graphs with dynamic batch and length, gated against PyTorch."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from vae_edge.export import text as text_export
from vae_edge.export.bundle import ExportError, ExportOptions, export_bundle


def test_manifest_declares_the_text_graphs_and_vocabulary(text_bundle):
    m = json.loads((text_bundle / "manifest.json").read_text())
    assert m["data"]["kind"] == "text"
    assert set(m["variants"]) == {"fp32", "int8"}
    for variant in m["variants"].values():
        assert {variant[g] for g in ("encoder", "decoder", "decoder_step")} <= set(m["files"])
    assert m["data"]["vocabulary"]["specials"] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert m["variants"]["fp32"]["accuracy"]["passed"] is True
    assert m["variants"]["fp32"]["accuracy"]["greedy_agreement"] == 1.0
    # What int8 quantizes is recorded: the matrix products (all of the step graph's), never a GRU node.
    ops = m["variants"]["int8"]["quantized_ops"]
    assert "MatMulInteger" in ops["decoder_step"]["int8"] and "GRU" in ops["decoder"]["float"]


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_no_loop_in_any_graph_and_dynamic_batch_and_length(text_bundle, variant):
    m = json.loads((text_bundle / "manifest.json").read_text())
    entry = m["variants"][variant]
    for graph in ("encoder", "decoder", "decoder_step"):
        ops = {n.op_type for n in onnx.load(str(text_bundle / entry[graph])).graph.node}
        assert not ops & {"Loop", "Scan", "If"}, (graph, ops)
    enc, dec, step = (ort.InferenceSession(str(text_bundle / entry[g])) for g in ("encoder", "decoder", "decoder_step"))
    latent, hidden = m["model"]["latent_dim"], m["model"]["config"]["hidden_dim"]
    vocab = 4 + len(m["data"]["vocabulary"]["chars"])
    for batch, length in ((1, 2), (3, 9)):
        tokens = np.full((batch, length), 4, dtype=np.int64)
        mu, logvar = enc.run(None, {"tokens": tokens, "lengths": np.full(batch, length, dtype=np.int64)})
        assert mu.shape == logvar.shape == (batch, latent)
        (log_probs,) = dec.run(None, {"z": mu, "tokens": tokens})
        assert log_probs.shape == (batch, length, vocab)
        logits, state = step.run(None, {"z": mu, "token": tokens[:, 0], "state": np.zeros((batch, hidden), np.float32)})
        assert logits.shape == (batch, vocab) and state.shape == (batch, hidden)


def test_a_missed_fp32_gate_writes_nothing(tmp_path, text_model_path, monkeypatch):
    monkeypatch.setattr(text_export, "FP32_LOGPROB_ATOL", 0.0)  # no float graph is bit-exact to PyTorch
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="fp32") as info:
        export_bundle(text_model_path, out, ExportOptions(latency=None, variants=()))
    assert any("✗" in line and "log-prob" in line for line in info.value.report)
    assert not out.exists()


def test_text_bundles_refuse_other_variants(tmp_path, text_model_path):
    with pytest.raises(ExportError, match="int8 variant only"):
        export_bundle(text_model_path, tmp_path / "b", ExportOptions(latency=None, variants=("fp16",)))
    assert not (tmp_path / "b").exists()


def test_ort_format_copies_are_gated_and_run(tmp_path, text_model_path):
    from click.testing import CliRunner

    from vae_edge.runtime import TextVAE
    from vae_edge.runtime.cli import cli as run_main

    out = tmp_path / "bundle"
    result = export_bundle(text_model_path, out, ExportOptions(latency=None, allow_degraded=True, ort=True))
    m = result.manifest
    for variant in ("fp32", "int8"):
        entry = m["variants"][variant]
        assert set(entry["ort"]) >= {"encoder", "decoder", "decoder_step"} and all(entry["ort"][g] in m["files"] for g in ("encoder", "decoder", "decoder_step"))
        assert entry["ort"]["accuracy"]["lines"] > 0
    assert m["variants"]["fp32"]["ort"]["accuracy"]["passed"] is True
    assert "required_operators.config" in m["files"]
    assert any(line.split()[1:2] == ["fp32.ort"] for line in result.report), result.report
    lines = ["bako", "rimesa"]
    onnx_vae, ort_vae = TextVAE.load(out, threads=1), TextVAE.load(out, threads=1, format="ort")
    np.testing.assert_allclose(ort_vae.anomaly_score(lines), onnx_vae.anomaly_score(lines), rtol=1e-5)
    assert ort_vae.sample(6, seed=1) == onnx_vae.sample(6, seed=1)
    run = CliRunner().invoke(run_main, ["sample", str(out), "-n", "3", "--seed", "1", "--format", "ort"])
    assert run.exit_code == 0 and run.stdout.splitlines() == onnx_vae.sample(3, seed=1), run.output


def test_fp16_is_refused_with_the_reason(tmp_path, text_model_path):
    with pytest.raises(ExportError, match="fp16: .*crashes onnxruntime"):
        export_bundle(text_model_path, tmp_path / "b", ExportOptions(latency=None, variants=("int8", "fp16")))
    assert not (tmp_path / "b").exists()
