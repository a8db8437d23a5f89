"""Convolutional architectures, the Gaussian likelihood and per-feature standardisation, end to end:
config checks, shapes, save -> load, hand-computed NLL, export and runtime parity, the CLI's refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from vae_edge.models import VAEConfig, build_model, load_model
from vae_edge.runtime import VAE
from vae_edge.runtime.bundle import BundleError
from vae_edge.runtime.likelihoods import gaussian_nll
from vae_edge.trainer import TrainConfig, make_checkpoint, objectives, save_checkpoint, train
from vae_edge.trainer.cli import cli as train_cli
from vae_edge.trainer.data import Dataset, load_data

TINY = TrainConfig(epochs=2, batch_size=64, seed=0, iw_samples=4, quiet=True)


def _export_trained(tmp_path_factory, data, config: VAEConfig):
    """Train ``config`` briefly on ``data``, save model.pt, export fp32 + int8: (model.pt, bundle)."""
    from vae_edge.export.bundle import ExportOptions, export_bundle

    folder = tmp_path_factory.mktemp(f"{config.arch}-{config.likelihood}")
    result = train(config, data, TINY)
    path = folder / "model.pt"
    save_checkpoint(path, make_checkpoint(result.model, data=data.describe(), metrics=result.metrics))
    export_bundle(path, folder / "bundle", ExportOptions(latency=None))  # no test here reads latency
    return path, folder / "bundle"


@pytest.fixture(scope="module")
def digits_gaussian():
    return load_data("digits", likelihood="gaussian")


@pytest.fixture(scope="module")
def conv_bundle(tmp_path_factory, digits):
    config = VAEConfig(input_shape=digits.shape, latent_dim=4, arch="conv", channels=(4, 8), decoder_style="upsample")
    return _export_trained(tmp_path_factory, digits, config)


@pytest.fixture(scope="module")
def gaussian_bundle(tmp_path_factory, digits_gaussian):
    config = VAEConfig(input_shape=digits_gaussian.shape, latent_dim=4, hidden_dims=(32,), likelihood="gaussian")
    return _export_trained(tmp_path_factory, digits_gaussian, config)


@pytest.mark.parametrize("style", ["transpose", "upsample", "subpixel"])
@pytest.mark.parametrize(("arch", "shape"), [("conv", (1, 8, 8)), ("conv", (3, 16, 8)), ("conv1d", (2, 16)), ("conv1d", (24,))])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_conv_shapes_per_arch_and_decoder_style(arch, shape, style, likelihood):
    model = build_model(VAEConfig(input_shape=shape, latent_dim=3, arch=arch, channels=(4, 8), decoder_style=style, likelihood=likelihood)).eval()
    x = torch.rand(5, *shape)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 3)
    mean = model.decode(mu)
    assert mean.shape == (5, *shape)
    if likelihood == "bernoulli":
        assert model.observation_logvar() is None and bool(((mean >= 0) & (mean <= 1)).all())
    else:  # unbounded mean: the decoder's raw output itself
        assert torch.equal(mean, model.decoder.logits(mu)) and model.observation_logvar().shape == shape
    upsampling = [type(m).__name__ for m in model.decoder.modules()]
    assert ("Upsample" in upsampling) == (style == "upsample")
    assert ("PixelShuffle" in upsampling) == (style == "subpixel")
    assert any(n.startswith("ConvTranspose") for n in upsampling) == (style == "transpose")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (1, 28, 27), "arch": "conv", "channels": (8, 16, 32)}, "needs sizes divisible by 8, got 28x27; 32x24 fits"),
        ({"input_shape": (1, 8, 8), "arch": "conv", "channels": (4, 4, 4, 4)}, "divisible by 16, got 8x8; 16x16 fits"),
        ({"input_shape": (64,), "arch": "conv"}, "needs image samples [C, H, W]"),
        ({"input_shape": (1, 8, 8), "arch": "conv1d"}, "needs sequences [C, L] or [L]"),
        ({"input_shape": (30,), "arch": "conv1d", "channels": (4, 8)}, "divisible by 4, got 30; 32 fits"),
        ({"input_shape": (4,), "gaussian_std": 0.5}, "only meaningful with likelihood 'gaussian'"),
        ({"input_shape": (4,), "likelihood": "gaussian", "gaussian_std": 0.0}, "gaussian_std must be a positive number"),
        ({"input_shape": (1, 8, 8), "arch": "conv", "decoder_style": "pixelshuffle"}, "decoder_style must be one of"),
        ({"input_shape": (1, 8, 8), "arch": "conv", "channels": ()}, "channels must be a non-empty"),
    ],
)
def test_config_refuses_what_the_architecture_cannot_build(kwargs, message):
    with pytest.raises(ValueError) as err:
        VAEConfig(**kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "config",
    [
        VAEConfig(input_shape=(1, 8, 8), latent_dim=3, arch="conv", channels=(4, 8), likelihood="gaussian"),
        VAEConfig(input_shape=(16,), latent_dim=3, arch="conv1d", channels=(4,), decoder_style="upsample", likelihood="gaussian", gaussian_std=0.3),
    ],
)
def test_save_load_round_trip_gives_identical_outputs(tmp_path, config):
    torch.manual_seed(0)
    model = build_model(config).eval()
    if model.noise.fixed is None:  # a learned variance must survive the round trip too
        with torch.no_grad():
            model.noise.raw_logvar.uniform_(-1.0, 1.0)
    path = save_checkpoint(tmp_path / "model.pt", make_checkpoint(model, data={"dataset": "test"}, metrics={}))
    loaded = load_model(path)
    assert loaded.config == config
    x = torch.rand(4, *config.input_shape)
    for a, b in zip(model.encode(x), loaded.encode(x)):
        assert torch.equal(a, b)
    z = torch.randn(4, config.latent_dim)
    assert torch.equal(model.decode(z), loaded.decode(z))
    assert torch.equal(model.observation_logvar(), loaded.observation_logvar())
    assert torch.equal(objectives.reconstruction_nll(model, z, x), objectives.reconstruction_nll(loaded, z, x))


def test_gaussian_nll_matches_a_hand_computed_value():
    # x = [1, -1], mean = [0.5, 0], sigma = 0.5:
    # sum of 0.5 log(2 pi) + log sigma + (x - mean)^2 / (2 sigma^2) = log(2 pi) + 2 log 0.5 + (0.25 + 1) / 0.5
    expected = math.log(2 * math.pi) + 2 * math.log(0.5) + 2.5  # 2.951583 nats
    model = build_model(VAEConfig(input_shape=(2,), latent_dim=1, hidden_dims=(3,), likelihood="gaussian", gaussian_std=0.5))
    with torch.no_grad():  # the decoder ignores z and outputs its bias: mean = [0.5, 0]
        model.decoder.out.weight.zero_()
        model.decoder.out.bias.copy_(torch.tensor([0.5, 0.0]))
    nll = objectives.reconstruction_nll(model, torch.zeros(1, 1), torch.tensor([[1.0, -1.0]]))
    assert nll.item() == pytest.approx(expected, rel=1e-6)
    runtime = gaussian_nll(np.array([[1.0, -1.0]], np.float32), np.array([[0.5, 0.0]], np.float32), 2 * math.log(0.5))
    assert runtime[0] == pytest.approx(expected, rel=1e-12)


def test_learned_variance_is_floored_and_trained(gaussian_bundle):
    logvar = load_model(gaussian_bundle[0]).observation_logvar().detach()
    assert logvar.shape == (1, 8, 8)
    assert not torch.equal(logvar, torch.zeros_like(logvar))  # it moved from its start at std 1
    assert float(logvar.min()) >= 2 * math.log(0.01) - 1e-6


def test_runtime_cli_describes_and_draws_a_gaussian_bundle(tmp_path, gaussian_bundle, digits_gaussian):
    from vae_edge.runtime.cli import cli as run_cli

    info = CliRunner().invoke(run_cli, ["info", str(gaussian_bundle[1])])
    assert info.exit_code == 0, info.output
    assert "gaussian likelihood (std per-feature[" in info.output and "graphs see (x - per-feature[" in info.output
    x = tmp_path / "x.npy"
    np.save(x, digits_gaussian.test[:8])
    grid = tmp_path / "recon.png"
    result = CliRunner().invoke(run_cli, ["reconstruct", str(gaussian_bundle[1]), str(x), "--grid", str(grid), "--out", str(tmp_path / "r.npy")])
    assert result.exit_code == 0, result.output
    assert grid.is_file() and np.load(tmp_path / "r.npy").shape == (8, 1, 8, 8)


def test_preprocessing_follows_the_likelihood(digits, digits_gaussian):
    assert (digits.offset, digits.scale) == (0.0, 16.0)  # Bernoulli: 0..16 onto [0, 1], as before
    train_x = digits_gaussian.train
    np.testing.assert_allclose(digits_gaussian.offset, train_x.mean(axis=0), atol=1e-5)
    assert digits_gaussian.offset.shape == digits_gaussian.scale.shape == (1, 8, 8)
    # The std is floored at STD_FLOOR of the data's range (0..16): the digits' corner pixels, always or
    # almost always 0, are centred and divided by 1.6, never by 0 or by a std that makes a 1 a 50-sigma value.
    from vae_edge.trainer.data import STD_FLOOR

    std = train_x.std(axis=0)
    floored = std < STD_FLOOR * 16
    assert (std == 0).any() and np.allclose(digits_gaussian.scale[floored], STD_FLOOR * 16)
    standardised = digits_gaussian.to_model(train_x)
    np.testing.assert_allclose(standardised.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(standardised.std(axis=0)[~floored], 1.0, atol=1e-4)
    pre = digits_gaussian.preprocessing
    assert np.array(pre["offset"]).shape == (1, 8, 8) and isinstance(pre["scale"], list)
    # The test split is standardised with the train statistics, not its own.
    assert not np.allclose(digits_gaussian.to_model(digits_gaussian.test).mean(axis=0), 0.0, atol=1e-4)
    shown = digits_gaussian.to_display(standardised[:4])
    np.testing.assert_allclose(shown, train_x[:4] / 16.0, atol=1e-5)  # back to the 0..16 range as [0, 1]


def test_dataset_refuses_an_unknown_likelihood_and_out_of_range_bernoulli_data():
    x = np.linspace(0, 2, 30, dtype=np.float32).reshape(10, 3)
    with pytest.raises(ValueError, match="likelihood must be"):
        Dataset("v", "v", x, x, x, "vector", likelihood="poisson")
    with pytest.raises(ValueError, match="outside the range 0..1"):
        Dataset("v", "v", x, x, x, "vector", value_range=(0.0, 1.0))
    # No known range and values beyond [0, 1]: refused for Bernoulli with the reason and the fix.
    with pytest.raises(ValueError, match="values span 0..2; a Bernoulli model needs a range.*--likelihood gaussian"):
        Dataset("v", "v", x, x, x, "vector")
    vectors = Dataset("v", "v", x / 2, x / 2, x / 2, "vector")  # in [0, 1]: the train split's min and max
    assert (vectors.offset, vectors.scale) == (0.0, 1.0)


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


def test_a_gaussian_manifest_that_disagrees_with_its_graph_is_refused(tmp_path, gaussian_bundle):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(gaussian_bundle[1], bundle)
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    original = manifest["model"]["likelihood_params"]
    for edit, message in (
        ({"variance": "learned", "std": 1.0}, "was exported with likelihood_params"),
        ({"variance": "learned", "std": [1.0, 2.0]}, "likelihood_params.std must be"),
        (None, "likelihood_params.std must be"),
    ):
        manifest["model"]["likelihood_params"] = edit
        path.write_text(json.dumps(manifest))
        with pytest.raises(BundleError, match=message.replace("[", r"\[")):
            VAE.load(bundle)
    manifest["model"]["likelihood_params"] = original
    manifest["data"]["preprocessing"]["offset"] = 0.0  # per-feature in the graph, a number here
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="was exported with preprocessing"):
        VAE.load(bundle)


def test_cli_trains_a_gaussian_conv_model(tmp_path):
    out = tmp_path / "model.pt"
    args = ["--arch", "conv", "--channels", "4", "--channels", "8", "--decoder-style", "upsample", "--likelihood", "gaussian",
            "--gaussian-std", "0.5", "--epochs", "1", "--iw-samples", "2", "--quiet", "--out", str(out)]
    result = CliRunner().invoke(train_cli, args)
    assert result.exit_code == 0, result.output
    config = torch.load(out, weights_only=True)["config"]
    assert (config["arch"], config["gaussian_std"], config["channels"], config["decoder_style"]) == ("conv", 0.5, [4, 8], "upsample")
    assert "gaussian (std 0.5)" in result.output
    assert (tmp_path / "model.reconstructions.png").is_file()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--arch", "conv", "--channels", "4", "--channels", "4", "--channels", "4", "--channels", "4"], "divisible by 16, got 8x8"),
        (["--arch", "conv1d"], "needs sequences"),
        (["--gaussian-std", "0.5"], "only meaningful with likelihood 'gaussian'"),
        (["--likelihood", "gaussian", "--gaussian-std", "0"], "--gaussian-std"),
        # options of the other architecture used to be ignored without a word
        (["--channels", "8"], "--channels: does not apply to --arch mlp"),
        (["--decoder-style", "upsample"], "--decoder-style: does not apply to --arch mlp"),
        (["--arch", "conv", "--hidden", "8"], "--hidden: does not apply to --arch conv"),
    ],
)
def test_cli_refuses_a_model_the_data_cannot_fit(tmp_path, args, fragment):
    result = CliRunner().invoke(train_cli, [*args, "--epochs", "1", "--quiet", "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error") and fragment in lines[-1], result.output
    assert "Traceback" not in result.output and not (tmp_path / "m.pt").exists()


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
