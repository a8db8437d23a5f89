import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from vae_edge.export import graphs as graphs_mod
from vae_edge.export.bundle import ExportError, ExportOptions, export_bundle
from vae_edge.models import load_model
from vae_edge.runtime import contract


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_bundle_layout_and_manifest(bundle, model_path):
    names = sorted(p.name for p in bundle.iterdir())
    assert names == ["decoder.int8.onnx", "decoder.onnx", "encoder.int8.onnx", "encoder.onnx", "golden.json", "manifest.json", "score.int8.onnx", "score.onnx"]
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["schema"] == "vae-edge/bundle/1"
    assert m["model"]["latent_dim"] == 4 and m["model"]["likelihood"] == "bernoulli"
    assert m["data"]["shape"] == [1, 8, 8]
    assert m["data"]["preprocessing"]["scale"] == 16.0
    assert m["graphs"]["encoder"]["inputs"] == {"x": ["batch", 1, 8, 8]}
    assert m["graphs"]["decoder"]["outputs"] == {"x_mean": ["batch", 1, 8, 8]}
    assert m["graphs"]["score"] == {"inputs": {"x": ["batch", 1, 8, 8]}, "outputs": {"score": ["batch"]}}
    assert m["opset"] == 18
    for name, meta in m["files"].items():
        data = (bundle / name).read_bytes()
        assert meta["bytes"] == len(data)
        assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    for variant in ("fp32", "int8"):
        acc = m["variants"][variant]["accuracy"]
        assert acc["passed"] is True
        assert {"encoder_mu_max_abs", "decoder_x_mean_max_abs", "recon_nll_rel_change", "score_max_rel_diff", "neg_elbo"} <= set(acc)
        q = m["variants"][variant]["anomaly_quantiles"]
        assert q["p50"] < q["p95"] < q["p99"] <= q["p99.9"]
    assert m["provenance"]["source"] == model_path.name and len(m["provenance"]["weights_sha256"]) == 64
    assert "prior" not in m["model"] and m["model"]["config"]["prior"] == "standard"  # N(0, I): no prior entry
    assert m["anomaly"]["score"].endswith("plus KL")


def test_a_vamp_model_exports_its_prior_as_float32_numbers(vamp_bundle):
    model_path, bundle = vamp_bundle
    m = json.loads((bundle / "manifest.json").read_text())
    prior = m["model"]["prior"]
    assert prior["kind"] == "vamp" and prior["components"] == 4
    assert m["model"]["config"]["prior"] == "vamp" and m["model"]["config"]["prior_components"] == 4
    assert "upper bound on the KL to the VampPrior" in m["anomaly"]["score"]  # the score graph's KL is a bound there
    with torch.no_grad():
        mu, logvar = load_model(model_path).prior_components()
    for key, want in (("mu", mu), ("logvar", logvar)):
        got = np.array(prior[key])
        assert got.shape == (4, 3)
        np.testing.assert_array_equal(got, want.numpy().astype(np.float64))  # the float32 values, exactly
        np.testing.assert_array_equal(got.astype(np.float32).astype(np.float64), got)
    for variant in ("fp32", "int8"):  # every variant through the gates, its score graph holding the same components
        assert m["variants"][variant]["accuracy"]["passed"] is True
        consts = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(bundle / m["variants"][variant]["score"])).graph.initializer}
        np.testing.assert_array_equal(consts["score_prior_mu"][0], mu.numpy())
        np.testing.assert_array_equal(consts["score_prior_logvar"][0], logvar.numpy())
    assert m["variants"]["fp32"]["accuracy"]["score_max_rel_diff"] < 1e-5


def test_graphs_are_valid_deterministic_and_carry_metadata(bundle):
    for name in ("encoder.onnx", "decoder.onnx", "score.onnx", "encoder.int8.onnx", "decoder.int8.onnx", "score.int8.onnx"):
        model = onnx.load(str(bundle / name))
        onnx.checker.check_model(model, full_check=True)
        ops = {n.op_type for n in model.graph.node}
        assert not ops & {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Dropout"}, ops
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["vae_edge.latent_dim"] == "4"
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [i.name for i in _session(bundle / "encoder.onnx").get_inputs()] == ["x"]
    assert [o.name for o in _session(bundle / "encoder.onnx").get_outputs()] == ["mu", "logvar"]
    assert [o.name for o in _session(bundle / "decoder.onnx").get_outputs()] == ["x_mean"]


@pytest.mark.parametrize("batch", [1, 3, 64])
def test_fp32_graphs_match_pytorch_at_any_batch(bundle, model_path, batch):
    model = load_model(model_path)
    rng = np.random.default_rng(batch)
    x = rng.random((batch, 1, 8, 8), dtype=np.float32)
    z = rng.standard_normal((batch, 4)).astype(np.float32)
    with torch.no_grad():
        mu, logvar = model.encode(torch.from_numpy(x))
        x_mean = model.decode(torch.from_numpy(z))
    got_mu, got_logvar = _session(bundle / "encoder.onnx").run(None, {"x": x})
    (got_x,) = _session(bundle / "decoder.onnx").run(None, {"z": z})
    np.testing.assert_allclose(got_mu, mu.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got_logvar, logvar.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got_x, x_mean.numpy(), atol=1e-4, rtol=0)


def test_int8_is_within_tolerance_and_smaller(bundle, model_path, digits):
    model = load_model(model_path)
    x = digits.to_model(digits.test)
    with torch.no_grad():
        mu, _ = model.encode(torch.from_numpy(x))
        want = model.decode(mu).numpy()
    (got,) = _session(bundle / "decoder.int8.onnx").run(None, {"z": mu.numpy()})
    assert np.abs(got - want).max() < 0.05
    m = json.loads((bundle / "manifest.json").read_text())
    assert abs(m["variants"]["int8"]["accuracy"]["recon_nll_rel_change"]) < 0.02
    fp32 = m["files"]["decoder.onnx"]["bytes"] + m["files"]["encoder.onnx"]["bytes"]
    int8 = m["files"]["decoder.int8.onnx"]["bytes"] + m["files"]["encoder.int8.onnx"]["bytes"]
    assert int8 < 0.5 * fp32  # the small test model; the default bundle is checked against 0.3x below


def test_default_bundle_int8_is_under_a_third_of_fp32_bytes():
    from vae_edge.runtime import default_bundle_path

    m = json.loads((default_bundle_path() / "manifest.json").read_text())
    size = lambda v: sum(m["files"][m["variants"][v][g]]["bytes"] for g in ("encoder", "decoder"))  # noqa: E731
    assert size("int8") <= 0.3 * size("fp32")
    assert abs(m["variants"]["int8"]["accuracy"]["recon_nll_rel_change"]) <= 0.01


def test_export_is_deterministic_and_replaces_an_existing_bundle(tmp_path, model_path, bundle, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    out = tmp_path / "again"
    shutil.copytree(bundle, out)
    # A file an older export wrote, and listed: the folder is one of ours, replaced whole (a file that
    # its manifest does not list would make it not ours: tests/export/test_hostile_destination.py).
    (out / "stale.txt").write_text("from an older export")
    m = json.loads((out / "manifest.json").read_text())
    m["files"]["stale.txt"] = contract.file_entry(out / "stale.txt")
    (out / "manifest.json").write_text(json.dumps(m))
    export_bundle(model_path, out, ExportOptions(variants=("int8",), latency=None))
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "manifest.json").read_text())["latency"]["measured"] is False
    for name in ("encoder.onnx", "decoder.onnx", "encoder.int8.onnx", "decoder.int8.onnx", "manifest.json"):
        assert (out / name).read_bytes() == (bundle / name).read_bytes(), name  # --no-latency: byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no temporary folders left behind


def test_a_graph_that_differs_from_pytorch_fails_and_writes_nothing(tmp_path, model_path, bundle, monkeypatch):
    """A decoder that is off by 1e-3 must be caught; the earlier bundle stays as it was."""
    real = graphs_mod.export_graph

    def broken(model, spec, path, **kw):
        proto = real(model, spec, path, **kw)
        if spec.name == "decoder":
            init = next(t for t in proto.graph.initializer if len(onnx.numpy_helper.to_array(t).shape) == 1 and onnx.numpy_helper.to_array(t).size == 64)
            arr = onnx.numpy_helper.to_array(init) + np.float32(0.01)
            init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
            onnx.save_model(proto, str(path))
        return proto

    monkeypatch.setattr(graphs_mod, "export_graph", broken)
    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ExportError) as info:
        export_bundle(model_path, out, ExportOptions(variants=("int8",)))
    message = "\n".join(info.value.report)
    assert re.search(r"✗ fp32 +decoder.x_mean max-abs", message)
    assert re.search(r"✓ fp32 +encoder.mu max-abs", message)  # every check is reported, not just the first failure
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_quantized_gate_fails_unless_degraded_is_allowed(tmp_path, model_path):
    strict = ExportOptions(variants=("int8",), tolerance=0.0, latency=None)
    with pytest.raises(ExportError, match="allow-degraded"):
        export_bundle(model_path, tmp_path / "strict", strict)
    assert not (tmp_path / "strict").exists()
    result = export_bundle(model_path, tmp_path / "lenient", ExportOptions(variants=("int8",), tolerance=0.0, allow_degraded=True, latency=None))
    assert result.manifest["variants"]["int8"]["accuracy"]["passed"] is False
    assert result.manifest["variants"]["fp32"]["accuracy"]["passed"] is True


def test_export_options_refuse_unknown_variants():
    with pytest.raises(ValueError, match="unknown quantization"):
        ExportOptions(variants=("int4",))


def test_a_failing_exporter_becomes_one_export_error(tmp_path, model_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("Unsupported operator aten::weird\nlong internal detail")

    monkeypatch.setattr(graphs_mod, "export_graph", explode)
    with pytest.raises(ExportError, match=r"^exporting the encoder graph \(opset 18\) failed: RuntimeError: Unsupported operator aten::weird$"):
        export_bundle(model_path, tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_to_replace_what_is_not_a_bundle(tmp_path, model_path, monkeypatch):
    from vae_edge.export.bundle import DestinationError

    results = tmp_path / "results"
    results.mkdir()
    (results / "data.csv").write_text("precious")
    with pytest.raises(DestinationError, match="not a bundle"):
        export_bundle(model_path, results)
    assert (results / "data.csv").read_text() == "precious"
    with pytest.raises(DestinationError, match="holds model.pt"):
        export_bundle(model_path, model_path.parent)
    monkeypatch.chdir(results)
    with pytest.raises(DestinationError, match="current folder"):
        export_bundle(model_path, ".")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DestinationError, match="not a folder"):
        export_bundle(model_path, tmp_path / "afile")


def test_exported_opset_is_the_one_recorded(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    from vae_edge.export.graphs import opset_of

    for name in m["files"]:
        if name.endswith(".onnx"):
            assert opset_of(onnx.load(str(bundle / name))) == m["opset"] == 18
            assert b"stack_trace" not in (bundle / name).read_bytes()  # no exporter stack traces with local paths


def test_a_failed_export_leaves_no_folders_for_its_bundle(tmp_path):
    from vae_edge.export.bundle import export_bundle
    from vae_edge.models import CheckpointError

    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        export_bundle(tmp_path / "model.pt", tmp_path / "new" / "bundle")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_bundle_without_score_graphs_is_half_the_bytes_and_scores_the_same(tmp_path, model_path, bundle, test_digits):
    # ExportOptions(score_graph=False), vae-export --no-score-graph: no score.*.onnx; the runtime scores
    # it with the encoder and decoder (float64), within float32 rounding of the score graph.
    from vae_edge.runtime import VAE

    result = export_bundle(model_path, tmp_path / "b", ExportOptions(variants=(), latency=None, score_graph=False))
    files = result.manifest["files"]
    assert not any(name.startswith("score") for name in files) and "score" not in result.manifest["variants"]["fp32"]
    with_score = json.loads((bundle / "manifest.json").read_text())
    fp32 = ("encoder.onnx", "decoder.onnx")
    assert sum(files[f]["bytes"] for f in fp32) == sum(with_score["files"][f]["bytes"] for f in fp32)
    assert with_score["files"]["score.onnx"]["bytes"] > 0.9 * sum(files[f]["bytes"] for f in fp32)
    without = VAE.load(tmp_path / "b")
    assert without._score is None
    np.testing.assert_allclose(without.anomaly_score(test_digits[:16]), VAE.load(bundle).anomaly_score(test_digits[:16]), rtol=2e-6)


def test_a_saturated_decoder_passes_the_fp32_score_gate_from_logits(tmp_path, digits):
    # A decoder at p ~ 2e-6 and 1 - 2e-6 (logits +-13) on pixels with grey levels strictly inside
    # (0, 1): from onnxruntime's probabilities the score was 1.6e-4 from PyTorch (gate 1e-4) and the
    # export failed. The score graph takes the Sigmoid's logits; the two-call numpy path has only the
    # probabilities and is allowed their error.
    from vae_edge.export.validate import probability_error, reference
    from vae_edge.models import VAE as TorchVAE
    from vae_edge.models import VAEConfig
    from vae_edge.trainer import make_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = TorchVAE(VAEConfig(input_shape=digits.shape, latent_dim=2, hidden_dims=(8,)))
    x = torch.from_numpy(np.asarray(digits.train, np.float32)).flatten(1)
    with torch.no_grad():
        model.decoder.out.weight.zero_()
        model.decoder.out.bias.copy_(13.0 * torch.sign(x.mean(0) - 0.3))
    path = tmp_path / "model.pt"
    save_checkpoint(path, make_checkpoint(model, data=digits.describe(), metrics={}))
    fused = export_bundle(path, tmp_path / "fused", ExportOptions(variants=(), latency=None, search=False))
    assert fused.manifest["variants"]["fp32"]["accuracy"]["score_max_rel_diff"] < 1e-5
    two_calls = export_bundle(path, tmp_path / "two", ExportOptions(variants=(), latency=None, search=False, score_graph=False))
    figure = two_calls.manifest["variants"]["fp32"]["accuracy"]["score_max_rel_diff"]
    ref = reference(model.eval(), np.asarray(digits.test, np.float32))
    assert 1e-4 < figure < 1e-4 + (probability_error(ref) / np.abs(ref.neg_elbo)).max()
