"""Export stage: what the latent explorer page needs beyond the graphs, computed once at export.

The latent's main directions: PCA of the posterior means of the validation split when the latent has
more than two dimensions (the sliders move along them), the latent axes themselves otherwise; and the
validation data's range in data units (the drawing canvas maps its ink onto it).
"""

from __future__ import annotations

import numpy as np

MAX_DIRECTIONS = 6


def explorer_section(vae, val: np.ndarray) -> dict:
    """The manifest's ``explorer`` section from the fp32 runtime ``vae`` and validation data ``val``."""
    mu, _ = vae.encode(val)
    mu = mu.astype(np.float64)
    mean = mu.mean(axis=0)
    latent = mu.shape[1]
    if latent > 2:
        centred = mu - mean
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        # A validation split of n samples has at most n directions (vt is [min(n, latent), latent]).
        k = min(MAX_DIRECTIONS, len(vt))
        directions = vt[:k]
        # An eigenvector's sign is arbitrary: fix it so the largest component is positive (stable output).
        signs = np.sign(directions[np.arange(k), np.abs(directions).argmax(axis=1)])
        directions = directions * signs[:, None]
        var = s[:k] ** 2 / max(len(mu) - 1, 1)
        total = float((s**2).sum())
        # One sample (or identical ones) has no spread: 0 explained, not 0/0 (NaN is not JSON).
        explained = (s[:k] ** 2 / total if total > 0 else np.zeros(k)).tolist()
        method = "PCA of the validation split's posterior means"
    else:
        directions = np.eye(latent)
        var = mu.var(axis=0, ddof=1) if len(mu) > 1 else np.ones(latent)
        explained = (var / var.sum()).tolist()
        method = "the latent axes (latent of 2 or fewer dimensions)"
    return {
        "method": method,
        "split": "validation",
        "samples": int(len(mu)),
        "latent_mean": mean.tolist(),
        "directions": directions.tolist(),
        "direction_std": np.sqrt(var).tolist(),
        "explained_variance_ratio": explained,
        "data_min": float(np.min(val)),
        "data_max": float(np.max(val)),
    }
