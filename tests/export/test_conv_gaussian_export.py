"""Exporting conv and Gaussian models: the graphs and the bundle match PyTorch through the runtime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from helpers import export_trained

from vae_edge.models import VAEConfig, build_model, load_model
from vae_edge.runtime import VAE
from vae_edge.trainer import objectives


@pytest.fixture(scope="module")
def conv_bundle(tmp_path_factory, digits):
    config = VAEConfig(input_shape=digits.shape, latent_dim=4, arch="conv", channels=(4, 8), decoder_style="upsample")
    return export_trained(tmp_path_factory.mktemp("conv-bernoulli"), digits, config)


def test_conv_bundle_matches_pytorch_through_the_runtime(conv_bundle, digits):
    model_path, bundle = conv_bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["arch"] == "conv" and manifest["model"]["config"]["decoder_style"] == "upsample"
    assert "likelihood_params" not in manifest["model"]
    model = load_model(model_path)
    x = digits.test[:32]
    with torch.no_grad():
        recon, kl = objectives.elbo_terms(model, torch.from_numpy(digits.to_model(x)), mean_path=True)
    for precision, rtol in (("fp32", 1e-4), ("int8", 0.05)):
        scores = VAE.load(bundle, precision=precision).anomaly_score(x)
        np.testing.assert_allclose(scores, (recon + kl).double().numpy(), rtol=rtol)


def test_gaussian_bundle_takes_raw_units_and_matches_pytorch_on_standardised_data(gaussian_bundle, digits_gaussian):
    model_path, bundle = gaussian_bundle
    model = load_model(model_path)
    raw = digits_gaussian.test[:32]  # data units (0..16): the device does not standardise
    with torch.no_grad():
        xm = torch.from_numpy(digits_gaussian.to_model(raw))
        recon, kl = objectives.elbo_terms(model, xm, mean_path=True)
        mean = model.decode(model.encode(xm)[0]).numpy()
    vae = VAE.load(bundle)
    np.testing.assert_allclose(vae.anomaly_score(raw), (recon + kl).double().numpy(), rtol=1e-4)
    # Reconstructions come back in data units, through the per-feature map.
    np.testing.assert_allclose(vae.reconstruct(raw), mean * digits_gaussian.scale + digits_gaussian.offset, atol=1e-3)
    # Out of the training range is fine for a Gaussian (no [0, 1] check).
    assert np.isfinite(vae.anomaly_score(raw + 100.0)).all()

    manifest = json.loads((bundle / "manifest.json").read_text())
    params = manifest["model"]["likelihood_params"]
    assert params["variance"] == "learned" and np.array(params["std"]).shape == (1, 8, 8)
    np.testing.assert_allclose(np.log(np.array(params["std"])) * 2, model.observation_logvar().detach().numpy(), atol=1e-6)
    meta = {p.key: p.value for p in onnx.load(str(bundle / "decoder.onnx")).metadata_props}
    assert json.loads(meta["vae_edge.likelihood_params"]) == params
    assert manifest["variants"]["int8"]["accuracy"]["passed"]
    # --activation elu: recorded, rebuilt by load_model, and exported as the standard Elu op in every graph.
    assert manifest["model"]["config"]["activation"] == "elu" and isinstance(model.encoder.body[1], torch.nn.ELU)
    for name in ("encoder.onnx", "decoder.onnx", "encoder.int8.onnx", "decoder.int8.onnx"):
        ops = {n.op_type for n in onnx.load(str(bundle / name)).graph.node}
        assert "Elu" in ops and "Relu" not in ops, name


@pytest.mark.parametrize(("arch", "shape", "style"), [("conv1d", (32,), "upsample"), ("conv1d", (3, 16), "transpose"), ("conv1d", (2, 16), "subpixel"), ("conv", (1, 8, 8), "subpixel")])
def test_conv_graphs_export_and_match_pytorch(tmp_path, arch, shape, style):
    # export_bundle needs a data spec that gives sequences; the graphs themselves are checked here.
    import onnxruntime as ort

    from vae_edge.export.graphs import check_graph, export_graph
    from vae_edge.runtime.contract import DECODER, ENCODER

    model = build_model(VAEConfig(input_shape=shape, latent_dim=3, arch=arch, channels=(4, 8), decoder_style=style)).eval()
    sessions = []
    for spec in (ENCODER, DECODER):
        path = tmp_path / spec.filename()
        export_graph(model, spec, path)
        check_graph(path)
        sessions.append(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
    x = torch.rand(5, *shape)
    mu, logvar = sessions[0].run(None, {"x": x.numpy()})
    (x_mean,) = sessions[1].run(None, {"z": mu})
    with torch.no_grad():
        t_mu, t_logvar = model.encode(x)
        np.testing.assert_allclose(mu, t_mu.numpy(), atol=1e-5)
        np.testing.assert_allclose(logvar, t_logvar.numpy(), atol=1e-5)
        np.testing.assert_allclose(x_mean, model.decode(t_mu).numpy(), atol=1e-5)
    assert x_mean.shape == (5, *shape)
