"""The score graph (one session call per anomaly score) and the runtime's pre-bound calls (IOBinding per
thread and batch size): same results as the two-call path and as unbound session runs, nothing aliased."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from vae_edge.runtime import VAE
from vae_edge.runtime.bundle import read_prior
from vae_edge.runtime.likelihoods import prior_kl, reconstruction_nll
from vae_edge.runtime.sessions import BOUND_SIZES, MAX_BOUND_BATCH


def _two_call_score(vae: VAE, x: np.ndarray) -> np.ndarray:
    """The score as bundles without a score graph compute it: encoder, decoder at mu, numpy in float64
    (the KL to the manifest's prior: N(0, I) or a VampPrior's components)."""
    xm = vae.normalize(x)
    mu, logvar = (vae.session("encoder").run(None, {"x": xm}))
    mean = vae.session("decoder").run(None, {"z": mu})[0]
    return reconstruction_nll(vae.likelihood, xm, mean) + prior_kl(mu, logvar, read_prior("manifest", vae.manifest["model"]))


@pytest.fixture(params=["standard", "vamp"])
def scored(request) -> tuple:
    """(model.pt, bundle) with the prior N(0, I) or a VampPrior."""
    if request.param == "vamp":
        return request.getfixturevalue("vamp_bundle")
    return request.getfixturevalue("model_path"), request.getfixturevalue("bundle")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_score_graph_gives_the_two_call_score(scored, test_digits, precision):
    vae = VAE.load(scored[1], precision=precision)
    assert "score" in vae.manifest["variants"][precision]
    x = test_digits[:32].astype(np.float32)
    np.testing.assert_allclose(vae.anomaly_score(x), _two_call_score(vae, x), rtol=2e-6)
    assert vae.anomaly_score(x).dtype == np.float64 and vae.anomaly_score(x[0]).shape == ()


@pytest.mark.parametrize("batch", [1, 3])
def test_the_score_graph_matches_pytorch_negative_elbo(scored, batch):
    import torch

    from vae_edge.models import load_model
    from vae_edge.trainer import objectives

    model_path, bundle = scored
    x = np.random.default_rng(batch).random((batch, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        recon, kl = objectives.elbo_terms(load_model(model_path), torch.from_numpy(x), mean_path=True)
    (score,) = ort.InferenceSession(str(bundle / "score.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(score, (recon + kl).numpy(), rtol=1e-5)
    # the two-call path, float64 numpy on the same graphs' outputs, within the same tolerance
    np.testing.assert_allclose(_two_call_score(VAE.load(bundle), x * np.float32(16.0)), (recon + kl).numpy(), rtol=1e-5)


def test_a_bundle_without_score_graphs_is_scored_with_two_calls(bundle, bundle_copy, test_digits):
    manifest_path = bundle_copy / "manifest.json"
    m = json.loads(manifest_path.read_text())
    for entry in m["variants"].values():
        (bundle_copy / entry.pop("score")).unlink()
        m["files"] = {k: v for k, v in m["files"].items() if not k.startswith("score.")}
    manifest_path.write_text(json.dumps(m))
    old, new = VAE.load(bundle_copy), VAE.load(bundle)
    x = test_digits[:16]
    np.testing.assert_allclose(old.anomaly_score(x), new.anomaly_score(x), rtol=2e-6)
    assert old.is_anomaly(x).shape == (16,)


def test_bound_calls_match_unbound_runs_at_every_batch_size(bundle, test_digits):
    vae = VAE.load(bundle, threads=1)
    sizes = [*range(1, BOUND_SIZES + 3), MAX_BOUND_BATCH + 1]  # past the bound sizes per thread, and too large to bind
    x_all = np.tile(test_digits, (3, 1, 1, 1))[: max(sizes)].astype(np.float32)
    for n in sizes:
        x = x_all[:n]
        xm = vae.normalize(x)
        mu, logvar = vae.encode(x)
        want_mu, want_logvar = vae.session("encoder").run(None, {"x": xm})
        np.testing.assert_array_equal(mu, want_mu)
        np.testing.assert_array_equal(logvar, want_logvar)
        np.testing.assert_array_equal(vae.decode(mu), vae.session("decoder").run(None, {"z": mu})[0] * np.float32(16.0))
        np.testing.assert_array_equal(vae.anomaly_score(x), vae.session("score").run(None, {"x": xm})[0].astype(np.float64))


def test_results_are_the_callers_own_not_the_bound_buffers(bundle, test_digits):
    vae = VAE.load(bundle)
    a, b = test_digits[:2], test_digits[2:4]
    mu_a, _ = vae.encode(a)
    x_a, s_a = vae.decode(mu_a), vae.anomaly_score(a)
    kept = mu_a.copy(), x_a.copy(), s_a.copy()
    mu_b, _ = vae.encode(b)  # same batch size: the same bound buffers
    vae.decode(mu_b), vae.anomaly_score(b)
    for got, want in zip((mu_a, x_a, s_a), kept):
        np.testing.assert_array_equal(got, want)
    x_a[:] = 0  # writing into a result leaves the next call alone
    np.testing.assert_array_equal(vae.decode(mu_a), kept[1])


def test_one_reduction_checks_range_and_finiteness_and_the_slow_path_is_exact(bundle, test_digits):
    vae = VAE.load(bundle)
    x = test_digits[:4].astype(np.float32)
    edge = x.copy()
    edge[0, 0, 0, 0], edge[1, 0, 0, 0] = -0.0, 16.0 + 16e-5  # -0 (sign bit set) and rounding within the slack: accepted
    clipped = x.copy()
    clipped[0, 0, 0, 0], clipped[1, 0, 0, 0] = 0.0, 16.0
    np.testing.assert_array_equal(vae.encode(edge)[0], vae.encode(clipped)[0])
    np.testing.assert_allclose(vae.anomaly_score(edge), vae.anomaly_score(clipped), rtol=1e-6)  # within the tolerance: no penalty
    for value in (np.nan, np.inf, -np.inf):
        bad = x.copy()
        bad[2, 0, 3, 3] = value
        for method in (vae.encode, vae.anomaly_score, vae.reconstruct):
            with pytest.raises(ValueError, match="NaN or Inf"):
                method(bad)
    # Out of range is scored, not refused (likelihoods.out_of_range_penalty): clipped for the graphs,
    # 1000 nats per value out plus 1000 per model unit beyond, through the score graph as through two calls.
    for value, bound in ((16.5, 16.0), (-0.5, 0.0)):
        out = x.copy()
        out[2, 0, 3, 3] = value
        inside = x.copy()
        inside[2, 0, 3, 3] = bound
        np.testing.assert_array_equal(vae.encode(out)[0], vae.encode(inside)[0])
        expected = vae.anomaly_score(inside) + np.array([0, 0, 1000 + 1000 * 0.5 / 16, 0])
        np.testing.assert_allclose(vae.anomaly_score(out), expected, rtol=1e-6)
        np.testing.assert_allclose(vae.anomaly_score(out, samples=1), vae.anomaly_score(inside, samples=1) + expected - vae.anomaly_score(inside), rtol=1e-6)


def _one_by_one(vae: VAE, x: np.ndarray) -> list[np.ndarray]:
    """encode, decode, reconstruct and anomaly_score of each sample of ``x`` on its own (the fast path)."""
    rows = []
    for sample in x:
        mu, logvar = vae.encode(sample)
        rows.append([mu, logvar, vae.decode(mu), vae.reconstruct(sample), vae.anomaly_score(sample)])
    return [np.stack(column) for column in zip(*rows)]


def _batched(vae: VAE, x: np.ndarray) -> list[np.ndarray]:
    mu, logvar = vae.encode(x)
    return [mu, logvar, vae.decode(mu), vae.reconstruct(x), vae.anomaly_score(x)]


@pytest.mark.parametrize("which", ["digits", "sensor"])
def test_single_float32_samples_match_the_batch_and_are_the_callers_own(bundle, sensor_bundle, test_digits, which):
    # Single float32 samples take the inline fast path (bound batch-1 calls, no as_batch); a batch of 1 in
    # float64 or a non-contiguous view takes the general one: all agree with the batch, bit for bit
    # (digits: a scale only; the sensor bundle: Gaussian, an offset and a finite valid range).
    vae = VAE.load(bundle if which == "digits" else sensor_bundle[0], threads=1)
    if which == "digits":
        x = test_digits[:6].astype(np.float32)
    else:
        rng = np.random.default_rng(0)
        x = (vae._offset + vae._scale * rng.standard_normal((6, *vae.shape))).astype(np.float32)
    want = _batched(vae, x)
    for got, expected in zip(_one_by_one(vae, x), want):
        np.testing.assert_array_equal(got, expected)
    assert isinstance(vae.anomaly_score(x[0]), np.float64) and vae.anomaly_score(x[0]).shape == ()
    for other in (x[:1].astype(np.float64), np.asfortranarray(x[:1]), x[:1].tolist()):
        np.testing.assert_array_equal(vae.anomaly_score(other), want[4][:1])
        np.testing.assert_array_equal(vae.encode(other)[0], want[0][:1])
    # Results of single samples are new arrays, never a bound buffer a later call overwrites.
    first = _one_by_one(vae, x[:1])
    kept = [a.copy() for a in first]
    _one_by_one(vae, x[1:2])
    for got, expected in zip(first, kept):
        np.testing.assert_array_equal(got, expected)


def test_single_samples_refuse_and_clip_as_batches_do(bundle, test_digits):
    vae = VAE.load(bundle, threads=1)
    x = test_digits[0].astype(np.float32)
    for value in (np.nan, np.inf, -np.inf):
        bad = x.copy()
        bad[0, 1, 1] = value
        for method in (vae.encode, vae.anomaly_score, vae.reconstruct):
            with pytest.raises(ValueError, match="NaN or Inf"):
                method(bad)
    out, inside = x.copy(), x.copy()
    out[0, 2, 2], inside[0, 2, 2] = 17.0, 16.0
    np.testing.assert_array_equal(vae.encode(out)[0], vae.encode(inside)[0])
    np.testing.assert_allclose(vae.anomaly_score(out), vae.anomaly_score(inside) + 1000 + 1000 / 16, rtol=1e-6)
    np.testing.assert_array_equal(vae.anomaly_score(out), vae.anomaly_score(out[None])[0])
    z = np.zeros(vae.latent_dim, np.float32)
    for value, message in ((np.nan, "NaN or Inf"), (np.inf, "NaN or Inf"), (2e6, "within ±1e"), (-2e6, "within ±1e")):
        bad = z.copy()
        bad[1] = value
        for codes in (bad, np.tile(bad, (3, 1)), np.tile(bad, (40, 1))):  # Python floats, and (320 values) a dot product
            with pytest.raises(ValueError, match=message):
                vae.decode(codes)
    edge = np.full(vae.latent_dim, 1e6, np.float32) / np.sqrt(np.float32(vae.latent_dim)) * np.float32(0.999)
    np.testing.assert_array_equal(vae.decode(edge), vae.decode(edge[None])[0])  # within the bound: decoded


def test_sixteen_threads_scoring_single_samples_match_serial(bundle, test_digits):
    vae = VAE.load(bundle)
    x = test_digits[:32].astype(np.float32)
    serial = _one_by_one(vae, x)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: _one_by_one(vae, x[i % 32 : i % 32 + 1]), range(128)))
    for i, got in enumerate(results):
        for g, want in zip(got, serial):
            np.testing.assert_array_equal(g[0], want[i % 32])
