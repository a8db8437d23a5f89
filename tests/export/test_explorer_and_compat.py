"""What export adds for other runtimes and the explorer page: the minimum onnxruntime, the latent's main directions."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort

from vae_edge.export.compat import _key


def test_manifest_records_the_minimum_onnxruntime(bundle):
    section = json.loads((bundle / "manifest.json").read_text())["onnxruntime"]
    assert section["ir_versions"] and section["opsets"] == [18]
    # Loadable by the Python runtime's onnxruntime and by the npm packages (1.30), as tests/runtime_js checks.
    assert _key(section["min_version"]) <= _key(ort.__version__.split("+")[0]) and _key(section["min_version"]) <= (1, 30)


def test_explorer_directions_are_orthonormal_principal_axes(bundle):
    from vae_edge.runtime import VAE
    from vae_edge.trainer.data import load_data

    ex = json.loads((bundle / "manifest.json").read_text())["explorer"]
    d = np.array(ex["directions"])
    np.testing.assert_allclose(d @ d.T, np.eye(len(d)), atol=1e-9)
    assert all(a >= b for a, b in zip(ex["direction_std"], ex["direction_std"][1:]))
    mu, _ = VAE.load(bundle, threads=1).encode(load_data("digits").val)
    np.testing.assert_allclose(ex["latent_mean"], mu.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ex["direction_std"][0], (mu - mu.mean(axis=0)).dot(d[0]).std(ddof=1), rtol=1e-5)


def test_explorer_section_of_a_validation_split_smaller_than_the_directions(bundle):
    # --split 0.999,0.001,0 leaves 1 or 2 validation samples: fewer than the 6 directions wanted.
    from vae_edge.export.explorer import explorer_section
    from vae_edge.runtime import VAE
    from vae_edge.trainer.data import load_data

    vae = VAE.load(bundle, threads=1)
    val = load_data("digits").val
    for n in (1, 2):
        ex = explorer_section(vae, val[:n])
        assert ex["samples"] == n and len(ex["directions"]) == n
        assert np.isfinite(ex["explained_variance_ratio"]).all()
        json.dumps(ex, allow_nan=False)
