"""model.pt's format in one place: the dict written by the trainer and read by --resume, the exporter,
tests and benchmarks.

model.pt is a plain dict saved with ``torch.save`` and read with ``torch.load(weights_only=True)``: a file
that carries pickled code is refused before anything in it runs. Its entries:

- ``format``: :data:`FORMAT`, checked first;
- ``config``: ``VAEConfig.to_dict()``, from which the model is rebuilt;
- ``state_dict``: the weights (CPU tensors; the best epoch's under early stopping);
- ``data``: ``Dataset.describe()`` plus the likelihood: spec, kind, shape, preprocessing, split sizes;
- ``metrics``: the latest figures (per epoch while training, the test figures at the end);
- ``optimizer``: the optimizer's state dict, or None;
- ``train_state``: what --resume continues from (epoch, history, train config, RNG state), or {}.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from vae_edge.runtime.files import atomic_path

from .config import VAEConfig
from .vae import VAE, build_model

FORMAT = "vae-edge/1"
REQUIRED_KEYS = ("format", "config", "state_dict", "data")


class CheckpointError(ValueError):
    """model.pt is missing, unreadable, unsafe or not a vae-edge checkpoint."""


def make_checkpoint(
    model: VAE,
    *,
    data: dict,
    metrics: dict,
    optimizer: torch.optim.Optimizer | None = None,
    train_state: dict | None = None,
    weights: dict | None = None,
) -> dict:
    """The model.pt dict (entries as listed at the top of this module).

    Args:
        data: ``Dataset.describe()``; the model's likelihood is added.
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


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and check a model.pt dict without building the model.

    Raises:
        CheckpointError: with a one-line reason naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        # torch.save writes a zip archive; anything else is not ours (and old pickle-only files are refused).
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (not a torch.save zip archive)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses arbitrary classes and callables: the file would have run code on load.
        raise CheckpointError(
            f"{path}: refused, the file holds pickled objects other than tensors and plain data ({_why(exc)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not a vae-edge checkpoint (format {found!r}, expected {FORMAT!r})")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    wrong = [k for k in ("config", "state_dict", "data") if not isinstance(ckpt[k], dict)]
    if wrong:
        raise CheckpointError(f"{path}: checkpoint entries {', '.join(wrong)} must be dicts")
    return ckpt


def _why(exc: Exception) -> str:
    # torch's message is a paragraph; the line naming the refused global is the useful part.
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    named = [ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln]
    return (named or lines or [type(exc).__name__])[0]


def model_from_checkpoint(ckpt: dict, source: str = "checkpoint") -> VAE:
    """Rebuild the module from a checkpoint dict, in eval mode on the CPU.

    Raises:
        CheckpointError: the config or the weights do not fit.
    """
    try:
        config = VAEConfig.from_dict(dict(ckpt["config"]))
        model = build_model(config)
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{source}: weights do not match its config ({first})") from None
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{source}: weights contain NaN or Inf ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})")
    return model.eval()


def load_model(path: str | os.PathLike) -> VAE:
    """Rebuild the PyTorch VAE from model.pt (eval mode, CPU): what export, benchmarks and tests compare against.

    Raises:
        CheckpointError: missing, unsafe or malformed file.
    """
    return model_from_checkpoint(read_checkpoint(path), source=str(path))
