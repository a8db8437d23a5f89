"""PNG grids written beside model.pt: test reconstructions next to their originals, and prior samples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vae_edge.models import VAE
from vae_edge.runtime.images import RECONSTRUCTION_LABELS, interleave_rows, save_grid

Display = Callable[[np.ndarray], np.ndarray]


def _bernoulli(x: np.ndarray) -> np.ndarray:
    return x  # already probabilities in [0, 1]


@torch.no_grad()
def reconstruction_grid(model: VAE, x: np.ndarray, path: Path, *, n: int = 32, per_row: int = 8, display: Display = _bernoulli) -> Path:
    """Rows of originals (model space: test samples, or validation ones without a test split) each followed by a row of their reconstructions, labelled
    "input" and "reconstruction" in a margin; a short last row leaves blank tiles, keeping pairs aligned.

    Args:
        display: model space -> [0, 1] (``Dataset.to_display``); the default suits a Bernoulli model.
    """
    x = x[:n]
    mu, _ = model.encode(torch.from_numpy(x))
    recon = model.decode(mu).numpy()
    return save_grid(path, interleave_rows(display(x), display(recon), per_row), nrow=per_row, row_labels=RECONSTRUCTION_LABELS)


@torch.no_grad()
def sample_grid(model: VAE, path: Path, *, n: int = 64, seed: int = 0, display: Display = _bernoulli) -> Path:
    """Means of p(x|z) for z drawn from the prior with a fixed seed (``display`` as in reconstruction_grid)."""
    g = torch.Generator().manual_seed(seed)
    z = model.sample_prior(n, g)
    return save_grid(path, display(model.decode(z).numpy()), nrow=8)


def grid_paths(model_path: Path) -> tuple[Path, Path]:
    """model.pt -> (model.reconstructions.png, model.samples.png) in the same folder."""
    return (model_path.with_name(f"{model_path.stem}.reconstructions.png"), model_path.with_name(f"{model_path.stem}.samples.png"))
