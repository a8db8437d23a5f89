"""Writing model.pt: a plain dict (no pickled modules), saved atomically."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vae_edge.models import FORMAT, VAE
from vae_edge.runtime.files import atomic_path


def make_checkpoint(
    model: VAE,
    *,
    data: dict,
    metrics: dict,
    optimizer: torch.optim.Optimizer | None = None,
    train_state: dict | None = None,
    weights: dict | None = None,
) -> dict:
    """The model.pt dict that DESIGN.md specifies; readable with ``torch.load(weights_only=True)``.

    Args:
        weights: the state dict to store (e.g. the best epoch's); default: the model's current weights.
    """
    weights = model.state_dict() if weights is None else weights
    return {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in weights.items()},
        "data": {**data, "likelihood": model.config.likelihood},
        "metrics": metrics,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "train_state": train_state or {},
    }


def save_checkpoint(path: str | os.PathLike, ckpt: dict) -> Path:
    """``torch.save`` to a temporary file, fsync, rename: a crash leaves the old file or the new one."""
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)
