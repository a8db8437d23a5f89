"""The runtime on a Gaussian bundle: vae-run describes and reconstructs it; a manifest whose likelihood or
preprocessing disagrees with its graphs is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from vae_edge.runtime import VAE
from vae_edge.runtime.bundle import BundleError


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
