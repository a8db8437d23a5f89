"""A VampPrior bundle (manifest model.prior): sampling in the contract's draw order, log p(z) as PyTorch's,
the prior checked on load, named by vae-run info. Its scores: test_score_graph_and_bound_calls.py."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

from helpers import invoke, one_line_error

from vae_edge.models import load_model
from vae_edge.runtime import VAE, BundleError
from vae_edge.runtime.cli import cli as run_main
from vae_edge.runtime.golden import selftest
from vae_edge.runtime.rng import Generator


@pytest.fixture(scope="module")
def vamp(vamp_bundle):
    return VAE.load(vamp_bundle[1])


def _contract_latents(prior: dict, n: int, seed: int, temperature: float) -> np.ndarray:
    """z as the contract states it, straight from the manifest's numbers: n uniforms, then [n, L] normals."""
    mu, logvar = np.array(prior["mu"]), np.array(prior["logvar"])
    g = Generator(seed)
    u = g.random(n)
    c = np.minimum(np.floor(u * prior["components"]).astype(int), prior["components"] - 1)
    eps = g.standard_normal((n, mu.shape[1]))
    return (mu[c] + temperature * np.exp(0.5 * logvar[c]) * eps).astype(np.float32)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_vamp_samples_follow_the_contracts_draw_order(vamp_bundle, precision):
    vae = VAE.load(vamp_bundle[1], precision=precision)
    prior = vae.manifest["model"]["prior"]
    for n, seed, temperature in ((12, 5, 0.7), (1, 0, 1.0), (7, 2**64 - 1, 1.0)):
        z = _contract_latents(prior, n, seed, temperature)
        np.testing.assert_array_equal(vae.sample(n, seed=seed, temperature=temperature), vae.decode(z))
    a = vae.sample(40, seed=3)
    np.testing.assert_array_equal(a, vae.sample(40, seed=3))
    assert not np.array_equal(a, vae.sample(40, seed=4)) and vae.sample(0).shape == (0, 1, 8, 8)
    u = Generator(3).random(40)
    assert len(set(np.floor(u * prior["components"]).astype(int))) == prior["components"]  # every component drawn


def test_log_prior_is_pytorchs(vamp, vamp_bundle, bundle, model_path):
    for vae, path in ((vamp, vamp_bundle[0]), (VAE.load(bundle), model_path)):
        z = (2.0 * np.random.default_rng(0).standard_normal((9, vae.latent_dim))).astype(np.float32)
        with torch.no_grad():
            want = load_model(path).log_prior(torch.from_numpy(z)).double().numpy()
        got = vae.log_prior(z)
        assert got.dtype == np.float64 and got.shape == (9,) and vae.log_prior(z[0]).shape == ()
        np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(VAE.load(bundle).log_prior(z), -0.5 * (z.astype(np.float64) ** 2 + math.log(2 * math.pi)).sum(1), rtol=1e-12)
    with pytest.raises(ValueError, match="z: "):
        vamp.log_prior(np.full((2, 3), np.nan))


def test_the_golden_set_of_a_vamp_bundle_passes(vamp_bundle):
    lines, mismatches = selftest(vamp_bundle[1])
    assert not mismatches and any("sample" in line for line in lines)


@pytest.mark.parametrize("corrupt, fragment", [
    (lambda p, c: p.update(kind="gmm"), "model.prior.kind 'gmm'"),
    (lambda p, c: p.update(components=0), "model.prior.components must be a positive integer"),
    (lambda p, c: p.update(components=True), "model.prior.components must be a positive integer"),
    (lambda p, c: (p.update(components=5), c.update(prior_components=5)), "model.prior.mu must be 5 rows"),
    (lambda p, c: p["logvar"][1].pop(), "model.prior.logvar must be 4 rows (components) of 3 finite numbers"),
    (lambda p, c: p["mu"][0].__setitem__(0, "x"), "model.prior.mu must be"),
    (lambda p, c: p.update(logvar=1.0), "model.prior.logvar must be"),
    (lambda p, c: p["logvar"][0].__setitem__(0, 1e30), "model.prior.logvar holds 1e+30, beyond the 40"),  # finite, but the samples would overflow
    (lambda p, c: c.update(prior_components=3), "differs from model.config"),
    (lambda p, c: c.update(prior="standard"), "differs from model.config"),
    (lambda p, c: p.clear(), "model.config names the prior 'vamp' but the manifest has no model.prior"),
])
def test_a_corrupted_prior_is_refused_on_load(vamp_bundle, tmp_path, corrupt, fragment):
    folder = tmp_path / "b"
    shutil.copytree(vamp_bundle[1], folder)
    m = json.loads((folder / "manifest.json").read_text())
    corrupt(m["model"]["prior"], m["model"]["config"])
    if not m["model"]["prior"]:
        del m["model"]["prior"]
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="manifest.json: ") as info:
        VAE.load(folder)
    assert fragment in str(info.value)
    one_line_error(invoke(run_main, ["info", folder]), 2, fragment)


def test_info_names_the_prior(vamp_bundle):
    result = invoke(run_main, ["info", vamp_bundle[1]])
    assert result.exit_code == 0, result.output
    assert "mlp 16 relu, latent 3, bernoulli likelihood, prior vamp, 4 components" in result.output
