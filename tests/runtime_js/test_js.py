"""The JavaScript runtime (runtime-js) in real runtimes: Node's tests (conformance sets, the API's
refusals, parity with this Python runtime on 100 random inputs per method) and the explorer page in
Debian's headless Chromium against `vae-run serve`.

Skipped, saying why, where node, runtime-js/node_modules (`make js`) or chromium are missing; `.ci/run`
installs them, so CI runs everything.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vae_edge.runtime import VAE
from vae_edge.runtime.golden import encode_array
from vae_edge.runtime.likelihoods import model_bounds
from vae_edge.runtime.rng import Generator, normals

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "runtime-js"
N = 100
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _need_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("JavaScript tests skipped: no `node` on PATH (install Node.js >= 20; .ci/run does)")
    if not (JS / "node_modules" / "onnxruntime-node").is_dir():
        pytest.skip("JavaScript tests skipped: runtime-js/node_modules missing (run `make js`: npm ci with ONNXRUNTIME_NODE_INSTALL=skip)")
    return node


@pytest.fixture(scope="module")
def conv_gaussian_bundle(tmp_path_factory):
    """A tiny conv model with a Gaussian likelihood and per-feature standardisation, exported with the
    static int8 and fp16 variants: the other half of what the JavaScript runtime must reproduce."""
    _need_node()
    from vae_edge.export.bundle import ExportOptions, export_bundle
    from vae_edge.models import VAEConfig
    from vae_edge.trainer import TrainConfig, make_checkpoint, save_checkpoint, train
    from vae_edge.trainer.data import load_data

    data = load_data("digits", likelihood="gaussian")
    folder = tmp_path_factory.mktemp("conv-gaussian")
    config = VAEConfig(input_shape=data.shape, latent_dim=3, arch="conv", channels=(4, 8), likelihood="gaussian", decoder_style="upsample")
    result = train(config, data, TrainConfig(epochs=1, batch_size=64, seed=0, iw_samples=4, quiet=True))
    save_checkpoint(folder / "model.pt", make_checkpoint(result.model, data=data.describe(), metrics=result.metrics))
    export_bundle(folder / "model.pt", folder / "bundle", ExportOptions(variants=("int8-static", "fp16"), latency=None, allow_degraded=True))
    return folder / "bundle"


def _prior_latents(vae: VAE, n: int, seed: int, temperature: float) -> np.ndarray:
    """The float32 z that sample(n, seed, temperature) decodes, by the contract's draw order: N(0, I) takes
    n x latent normals times the temperature; a VampPrior n uniforms for the components, then the normals,
    z = mu_c + temperature * exp(0.5 logvar_c) * eps in float64."""
    g, prior = Generator(seed), vae.manifest["model"].get("prior")
    if prior is None:
        return (g.standard_normal((n, vae.latent_dim)) * temperature).astype(np.float32)
    mu, logvar = (np.asarray(prior[k], np.float64) for k in ("mu", "logvar"))
    c = np.minimum(np.floor(g.random(n) * len(mu)).astype(np.int64), len(mu) - 1)
    eps = g.standard_normal((n, vae.latent_dim))
    return (mu[c] + temperature * np.exp(0.5 * logvar[c]) * eps).astype(np.float32)


def _random_inputs(vae: VAE, seed: int) -> dict[str, np.ndarray]:
    """N inputs across the data's range (data units) and N latent codes from the prior."""
    rng = np.random.default_rng(seed)
    pre = vae.manifest["data"]["preprocessing"]
    offset, scale = (np.asarray(pre[k], np.float64) for k in ("offset", "scale"))
    unit = rng.uniform(0, 1, (N, *vae.shape)) if vae.likelihood == "bernoulli" else rng.standard_normal((N, *vae.shape))
    x = (unit * scale + offset).astype(np.float32)
    return {"x": x, "z": rng.standard_normal((N, vae.latent_dim)).astype(np.float32), "x_out": _out_of_range(vae, x, rng)}


def _out_of_range(vae: VAE, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x with a tenth of the features of every other sample moved beyond the valid range (up to one
    model-space unit past a bound, both sides), and a few just past it, within the rounding tolerance."""
    m = vae.manifest
    pre, valid = m["data"]["preprocessing"], m["data"].get("valid_range")
    offset, scale = (np.broadcast_to(np.asarray(pre[k], np.float64), vae.shape) for k in ("offset", "scale"))
    if valid is None:  # the runtime's fallback: [0, 1] in model space for Bernoulli
        low, high = np.zeros(vae.shape), np.ones(vae.shape)
    else:
        low, high = (np.broadcast_to(np.asarray(b, np.float64), vae.shape) for b in model_bounds(vae.likelihood, valid["low"], valid["high"], offset, scale))
    xm = ((x - offset) / scale).astype(np.float64)
    moved = rng.uniform(size=x.shape) < 0.1
    moved[1::2] = False
    beyond = rng.uniform(0.01, 1.0, x.shape)
    above = rng.uniform(size=x.shape) < 0.5
    xm = np.where(moved, np.where(above, high + beyond, low - beyond), xm)
    rows = xm[1::4].reshape(len(xm[1::4]), -1)
    rows[:, ::7] = high.ravel()[::7] + 5e-5  # rounding: clipped, no penalty
    xm[1::4] = rows.reshape(xm[1::4].shape)
    return (xm * scale + offset).astype(np.float32)


def _parity_case(bundle: Path, variant: str, seed: int) -> dict:
    vae = VAE.load(bundle, precision=variant, threads=1)
    inputs = _random_inputs(vae, seed)
    x, z = inputs["x"], inputs["z"]
    calls = {"sample": {"n": N, "seed": seed, "temperature": 0.8}, "interpolate": {"steps": 10}, "anomaly_score_mc": {"samples": 3, "seed": seed + 1}}
    mu, logvar = vae.encode(x)
    # The JavaScript runtime must draw these very latents (bit for bit); this runtime decodes them.
    inputs["z_sample"] = _prior_latents(vae, N, seed, 0.8)
    drawn = vae.sample(N, seed=seed, temperature=0.8)
    assert np.array_equal(drawn, vae.decode(inputs["z_sample"])), "sample() did not decode the contract's latents"
    expected = {
        "encode.mu": mu, "encode.logvar": logvar, "decode": vae.decode(z), "reconstruct": vae.reconstruct(x),
        "sample": drawn, "interpolate": vae.interpolate(x[0], x[1], steps=10), "log_prior": vae.log_prior(z),
        "anomaly_score": vae.anomaly_score(x), "anomaly_score_mc": vae.anomaly_score(x, samples=3, seed=seed + 1),
        "is_anomaly": vae.is_anomaly(x),
    }
    x_out = inputs["x_out"]
    mu_out, _ = vae.encode(x_out)
    expected.update({
        "out.encode.mu": mu_out, "out.reconstruct": vae.reconstruct(x_out), "out.anomaly_score": vae.anomaly_score(x_out),
        "out.anomaly_score_mc": vae.anomaly_score(x_out, samples=3, seed=seed + 1), "out.is_anomaly": vae.is_anomaly(x_out),
    })
    assert (expected["out.anomaly_score"][::2] > 1000).all(), "the out-of-range inputs were not scored out of range"
    return {"bundle": str(bundle), "variant": variant, "calls": calls,
            "inputs": {k: encode_array(v) for k, v in inputs.items()}, "expected": {k: encode_array(np.asarray(v)) for k, v in expected.items()}}


def test_node_runs_conformance_sets_api_checks_and_parity(tmp_path, bundle, conv_gaussian_bundle, vamp_bundle):
    node = _need_node()
    parity = [bundle, conv_gaussian_bundle, vamp_bundle[1]]  # the last: a VampPrior of 4 components (tests/conftest.py)
    bundles = [*parity, ROOT / "runtime" / "default_bundle"]
    cases = [_parity_case(b, v, seed) for seed, b in enumerate(parity) for v in json.loads((b / "manifest.json").read_text())["variants"]]
    prior = json.loads((vamp_bundle[1] / "manifest.json").read_text())["model"].get("prior")
    assert prior is not None and prior["kind"] == "vamp" and prior["components"] == 4, "the VampPrior bundle carries no model.prior"

    fixture = tmp_path / "parity.json"
    fixture.write_text(json.dumps(cases))
    env = {**os.environ, "VAE_EDGE_PARITY": str(fixture), "VAE_EDGE_BUNDLES": os.pathsep.join(map(str, bundles))}
    tests = sorted(str(p) for p in (JS / "test").glob("*.test.js"))
    result = subprocess.run([node, "--test", "--test-reporter=spec", *tests], cwd=JS, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(r"# fail 0|ℹ fail 0", result.stdout), result.stdout[-2000:]
    assert "# skipped 0" in result.stdout or "ℹ skipped 0" in result.stdout, "a Node test was skipped: " + result.stdout[-2000:]


def _serve(bundle: Path) -> tuple[subprocess.Popen, str]:
    """`vae-run serve BUNDLE --port 0` as a user runs it; (process, page URL)."""
    proc = subprocess.Popen([sys.executable, "-m", "vae_edge.runtime.cli", "serve", str(bundle), "--port", "0"], stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    match = re.search(r"at (http://\S+/) ", line)
    if match is None:
        proc.kill()
        raise AssertionError(f"vae-run serve did not start: {line}{proc.stderr.read()}")
    return proc, match.group(1)


def _page_expectations(bundle: Path, path: Path) -> None:
    """What the page computes, by this runtime: its grid (seed 0), a decode, the example's reconstruction and score."""
    vae = VAE.load(bundle, threads=1)
    golden = json.loads((bundle / "golden.json").read_text())
    x = np.asarray(golden["inputs"]["x"]["data"], np.float32).reshape(golden["inputs"]["x"]["shape"])[0]
    z = np.linspace(-1, 1, 3 * vae.latent_dim, dtype=np.float32).reshape(3, vae.latent_dim)
    path.write_text(json.dumps({
        "z": {"data": z.ravel().tolist(), "shape": list(z.shape)}, "decode": vae.decode(z).ravel().tolist(),
        "sample": vae.sample(16, seed=0).ravel().tolist(), "reconstruct": vae.reconstruct(x).ravel().tolist(),
        "score": float(vae.anomaly_score(x)), "is_anomaly": bool(vae.is_anomaly(x)),
    }))


def test_explorer_page_in_headless_chromium(tmp_path, bundle_copy, bundle):
    node = _need_node()
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"browser test skipped: no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does)")
    if not (JS / "node_modules" / "playwright-core").is_dir():
        pytest.skip("browser test skipped: runtime-js/node_modules/playwright-core missing (run `make js`)")
    expected = tmp_path / "expected.json"
    _page_expectations(bundle, expected)
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    tampered = manifest["variants"]["fp32"]["encoder"]
    data = bytearray((bundle_copy / tampered).read_bytes())
    data[-5] ^= 1
    (bundle_copy / tampered).write_bytes(bytes(data))
    shots = ROOT / "build" / "js"  # for a person to look at: build/js/explorer.png
    shots.mkdir(parents=True, exist_ok=True)
    good, url = _serve(bundle)
    bad, bad_url = _serve(bundle_copy)
    try:
        result = subprocess.run([node, str(JS / "test" / "browser.mjs"), url, str(expected), str(shots), bad_url, f"bundle/{tampered}"],
                                capture_output=True, text=True, timeout=180)
    finally:
        for proc in (good, bad):
            proc.terminate()
            proc.wait(timeout=10)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-1000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["decode_max_rel"] <= 1e-5 and figures["grid_max_rel"] <= 1e-5
    assert figures["browser_selftest_outputs"] == 18  # 9 outputs x (fp32, int8), on onnxruntime-web
    assert f"bundle/{tampered}: sha256 does not match" in figures["tampered_message"]
    assert (shots / "explorer.png").stat().st_size > 10_000
