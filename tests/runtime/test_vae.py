import json

import numpy as np
import pytest
import torch

from vae_edge.models import load_model
from vae_edge.runtime import VAE, BundleError


@pytest.fixture(scope="module")
def vae(bundle):
    return VAE.load(bundle)


def test_default_bundle_loads_and_describes_itself():
    vae = VAE.load()
    assert vae.path.name == "default_bundle" and (vae.path / "manifest.json").is_file()
    assert vae.manifest["data"]["dataset"] == "digits"
    assert vae.shape == (1, 8, 8) and vae.latent_dim == 16
    assert set(vae.manifest["variants"]) >= {"fp32", "int8"}


def test_same_seed_same_samples(vae):
    a, b, c = vae.sample(5, seed=3), vae.sample(5, seed=3), vae.sample(5, seed=4)
    assert a.shape == (5, 1, 8, 8) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0.0 <= a.min() and a.max() <= 16.0  # data units: digits grey levels
    assert vae.sample(0).shape == (0, 1, 8, 8)


def test_runtime_matches_pytorch_including_preprocessing(vae, model_path, test_digits):
    model = load_model(model_path)
    x = torch.from_numpy(test_digits / 16.0)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        x_mean = model.decode(mu)
    got_mu, got_logvar = vae.encode(test_digits)
    np.testing.assert_allclose(got_mu, mu.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got_logvar, logvar.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(vae.reconstruct(test_digits) / 16.0, x_mean.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(vae.decode(mu.numpy()) / 16.0, x_mean.numpy(), atol=1e-4, rtol=0)


def test_anomaly_score_is_the_negative_elbo_and_flags_noise(vae, model_path, test_digits):
    from vae_edge.trainer import objectives

    model = load_model(model_path)
    with torch.no_grad():
        nll, kl = objectives.elbo_terms(model, torch.from_numpy(test_digits / 16.0), mean_path=True)
    scores = vae.anomaly_score(test_digits)
    assert scores.shape == (len(test_digits),)
    np.testing.assert_allclose(scores, (nll + kl).numpy(), rtol=1e-4)
    noise = np.random.default_rng(0).uniform(0, 16, size=(32, 1, 8, 8))
    p99 = vae.manifest["variants"]["fp32"]["anomaly_quantiles"]["p99"]
    assert (vae.anomaly_score(noise) > p99).mean() > 0.9
    assert (scores > p99).mean() < 0.2
    mc = vae.anomaly_score(test_digits, samples=20, seed=1)
    np.testing.assert_array_equal(mc, vae.anomaly_score(test_digits, samples=20, seed=1))
    assert mc.mean() > scores.mean() - 1.0  # sampling z adds reconstruction error on average


def test_monte_carlo_score_draws_z_as_the_contract_in_float64(vae, test_digits, monkeypatch):
    # z = float32(mu + exp(0.5 logvar) eps), exp in float64: numpy's float32 exp is not correctly rounded,
    # so the JavaScript runtime could not draw the same z (its scores differed by 6e-5 relative).
    from vae_edge.runtime.rng import normals

    mu, logvar = vae.encode(test_digits)
    want = (mu + np.exp(0.5 * logvar.astype(np.float64)) * normals(5, mu.size).reshape(mu.shape)).astype(np.float32)
    drawn, decode = [], vae._decode_model
    monkeypatch.setattr(vae, "_decode_model", lambda z: drawn.append(z) or decode(z))
    vae.anomaly_score(test_digits, samples=1, seed=5)
    np.testing.assert_array_equal(drawn[0], want)


def test_single_sample_without_batch_axis(vae, test_digits):
    mu, logvar = vae.encode(test_digits[0])
    assert mu.shape == logvar.shape == (4,)
    np.testing.assert_allclose(mu, vae.encode(test_digits[:1])[0][0])
    assert vae.decode(mu).shape == (1, 8, 8)
    assert vae.reconstruct(test_digits[0]).shape == (1, 8, 8)
    assert np.ndim(vae.anomaly_score(test_digits[0])) == 0


def test_dtypes_are_cast_and_empty_batches_return_empty(vae, test_digits):
    as_int = test_digits[:3].astype(np.int64)
    np.testing.assert_allclose(vae.encode(as_int)[0], vae.encode(as_int.astype(np.float32))[0])
    np.testing.assert_allclose(vae.encode(test_digits[:3].astype(np.float64))[0], vae.encode(test_digits[:3])[0])
    np.testing.assert_allclose(vae.encode(test_digits[:2].tolist())[0], vae.encode(test_digits[:2])[0])
    empty = np.zeros((0, 1, 8, 8), np.float32)
    mu, logvar = vae.encode(empty)
    assert mu.shape == logvar.shape == (0, 4)
    assert vae.reconstruct(empty).shape == (0, 1, 8, 8)
    assert vae.decode(np.zeros((0, 4))).shape == (0, 1, 8, 8)
    assert vae.anomaly_score(empty).shape == (0,)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((2, 64), np.float32), r"expected shape \[n, 1, 8, 8\]"),
        (np.zeros((2, 1, 8), np.float32), "expected shape"),
        (np.zeros((1, 8, 8), np.float32)[0], "expected shape"),
        (np.full((1, 1, 8, 8), np.nan, np.float32), "NaN or Inf"),
        (np.full((1, 1, 8, 8), np.inf), "NaN or Inf"),
        (np.array([[["a"] * 8] * 8]), "numeric"),
        (np.empty((1, 1, 8, 8), dtype=object), "numeric"),
        (np.ones((1, 1, 8, 8), np.complex64), "real"),
        ([[1, 2], [3]], "irregular|numeric"),
    ],
)
def test_bad_inputs_raise_value_error_naming_what_was_expected(vae, bad, match):
    for method in (vae.encode, vae.reconstruct, vae.anomaly_score):
        with pytest.raises(ValueError, match=match):
            method(bad)


def test_bad_latents_and_arguments(vae):
    with pytest.raises(ValueError, match=r"z: expected shape \[n, 4\]"):
        vae.decode(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        vae.decode(np.full((1, 4), np.nan))
    for bad_n in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="n:"):
            vae.sample(bad_n)
    with pytest.raises(ValueError, match="temperature"):
        vae.sample(2, temperature=0)
    with pytest.raises(ValueError, match="samples"):
        vae.anomaly_score(np.zeros((1, 1, 8, 8)), samples=0)
    with pytest.raises(ValueError, match="steps"):
        vae.interpolate(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), steps=1)
    with pytest.raises(ValueError, match="one sample"):
        vae.interpolate(np.zeros((2, 1, 8, 8)), np.zeros((1, 8, 8)))


def test_interpolation_ends_at_the_reconstructions(vae, test_digits):
    path = vae.interpolate(test_digits[0], test_digits[1], steps=6)
    assert path.shape == (6, 1, 8, 8)
    np.testing.assert_allclose(path[0], vae.reconstruct(test_digits[0]), atol=1e-5)
    np.testing.assert_allclose(path[-1], vae.reconstruct(test_digits[1]), atol=1e-5)


def test_int8_precision_is_close_to_fp32(bundle, test_digits):
    fp32, int8 = VAE.load(bundle), VAE.load(bundle, precision="int8")
    assert int8.precision == "int8"
    diff = np.abs(int8.reconstruct(test_digits) - fp32.reconstruct(test_digits)) / 16.0
    assert diff.max() < 0.05
    rel = np.abs(int8.anomaly_score(test_digits) - fp32.anomaly_score(test_digits)) / fp32.anomaly_score(test_digits)
    assert rel.mean() < 0.01


def test_load_options_are_checked(bundle):
    with pytest.raises(ValueError, match="precision 'int4' is not in this bundle; it has fp32, int8"):
        VAE.load(bundle, precision="int4")
    with pytest.raises(ValueError, match="NoSuchExecutionProvider"):
        VAE.load(bundle, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="threads"):
        VAE.load(bundle, threads=0)
    assert VAE.load(bundle, threads=1, providers=["CPUExecutionProvider"]).sample(1, seed=0).shape == (1, 1, 8, 8)


def test_tampered_truncated_and_missing_files_are_refused(bundle_copy):
    enc = bundle_copy / "encoder.onnx"
    data = bytearray(enc.read_bytes())
    data[len(data) // 2] ^= 0xFF
    enc.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"encoder\.onnx: sha256 does not match"):
        VAE.load(bundle_copy)
    enc.write_bytes(bytes(data[:100]))
    with pytest.raises(BundleError, match=r"encoder\.onnx: 100 bytes"):
        VAE.load(bundle_copy)
    enc.unlink()
    with pytest.raises(BundleError, match=r"encoder\.onnx: missing"):
        VAE.load(bundle_copy)


def test_manifest_problems_are_refused(bundle_copy, tmp_path):
    manifest_path = bundle_copy / "manifest.json"
    original = json.loads(manifest_path.read_text())

    def write(m):
        manifest_path.write_text(json.dumps(m))

    m = dict(original, schema="vae-edge/bundle/99")
    write(m)
    with pytest.raises(BundleError, match="schema"):
        VAE.load(bundle_copy)
    m = json.loads(json.dumps(original))
    m["files"]["../escape.onnx"] = m["files"].pop("decoder.onnx")
    m["variants"]["fp32"]["decoder"] = "../escape.onnx"
    write(m)
    with pytest.raises(BundleError, match="outside the bundle"):
        VAE.load(bundle_copy)
    manifest_path.write_text("{not json")
    with pytest.raises(BundleError, match="unreadable manifest"):
        VAE.load(bundle_copy)
    manifest_path.unlink()
    with pytest.raises(BundleError, match="not a bundle"):
        VAE.load(bundle_copy)
    with pytest.raises(BundleError, match="no such bundle"):
        VAE.load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m["model"].update(latent_dim=3), "should take"),
        (lambda m: m["model"].pop("latent_dim"), "latent_dim must be a positive integer"),
        (lambda m: m["data"].update(shape=[64]), "should take"),
        (lambda m: m["variants"]["fp32"].update(encoder="decoder.onnx"), "should take"),
        (lambda m: m["data"]["preprocessing"].update(scale=255.0), "exported with preprocessing"),
        (lambda m: m["data"]["preprocessing"].update(scale=0), "preprocessing"),
        (lambda m: m["model"].update(likelihood="poisson"), "likelihood"),
        (lambda m: m["variants"]["fp32"]["anomaly_quantiles"].update(p99="x"), "anomaly_quantiles"),
    ],
)
def test_a_manifest_that_disagrees_with_its_graphs_is_refused(bundle_copy, edit, match):
    path = bundle_copy / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))
    with pytest.raises(BundleError, match=match):
        VAE.load(bundle_copy)


def test_seed_and_temperature_are_checked(vae):
    for seed in (-1, 1.5, "a"):
        with pytest.raises(ValueError, match="seed"):
            vae.sample(2, seed=seed)
    for t in (None, "a", 1e300, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            vae.sample(2, temperature=t)


def test_normalize_refuses_what_is_not_real_numbers_without_warnings(vae):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ComplexWarning (imaginary part dropped) would fail here
        for bad in (np.ones((1, 8, 8), complex), [1j] * 64, np.array(["a"] * 64), [[1.0], [1.0, 2.0]]):
            with pytest.raises(ValueError, match="x: expected"):
                vae.normalize(bad)
        x = np.full((2, 1, 8, 8), 8, np.int64)
        np.testing.assert_allclose(vae.normalize(x), vae.normalize(x.astype(np.float32)))
        assert vae.normalize([[8.0] * 8] * 8).dtype == np.float32


def test_out_of_range_inputs_get_a_finite_large_monotone_score(vae, test_digits):
    """Beyond 0..16 a digit is scored (clipped for the likelihood, plus the out-of-range term), flagged,
    and the score grows with the distance; a value inside the range adds nothing."""
    from vae_edge.runtime.likelihoods import OUT_OF_RANGE_NATS

    base = test_digits[0].copy()
    batch = np.stack([base] + [np.where(np.arange(64).reshape(1, 8, 8) == 27, v, base) for v in (17.0, 20.0, 100.0, 1e30)])
    scores = vae.anomaly_score(batch)
    assert np.isfinite(scores).all() and (np.diff(scores) > 0).all()
    assert scores[1] - scores[0] > OUT_OF_RANGE_NATS * 0.9
    assert vae.is_anomaly(batch, "p99.9")[1:].all()
    low = base.copy()
    low[0, 0, 0] = -5.0
    assert vae.anomaly_score(low) > vae.threshold("p99.9")
    assert vae.anomaly_score(np.clip(base, 0, 16)) == pytest.approx(float(vae.anomaly_score(base)))
    # encode and reconstruct take the clipped input: no refusal there either
    np.testing.assert_allclose(vae.encode(batch[2])[0], vae.encode(np.where(batch[2] > 16, 16, batch[2]))[0], rtol=1e-6)
