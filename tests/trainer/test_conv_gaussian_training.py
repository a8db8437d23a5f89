"""Training conv and Gaussian models: the learned variance, per-feature standardisation, the Dataset's
likelihood checks, and vae-train's conv/Gaussian options and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vae_edge.models import load_model
from vae_edge.trainer.cli import cli as train_cli
from vae_edge.trainer.data import Dataset


def test_learned_variance_is_floored_and_trained(gaussian_bundle):
    logvar = load_model(gaussian_bundle[0]).observation_logvar().detach()
    assert logvar.shape == (1, 8, 8)
    assert not torch.equal(logvar, torch.zeros_like(logvar))  # it moved from its start at std 1
    assert float(logvar.min()) >= 2 * math.log(0.01) - 1e-6


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
