"""Convolutional architectures and the Gaussian likelihood in the models: config checks, shapes per
architecture and decoder style, save -> load, a hand-computed Gaussian NLL."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vae_edge.models import VAEConfig, build_model, load_model
from vae_edge.runtime.likelihoods import gaussian_nll
from vae_edge.trainer import make_checkpoint, objectives, save_checkpoint


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
