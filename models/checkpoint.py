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

Over 300 lines on purpose: the writer, the reader and the one schema check of every entry
(:func:`check_checkpoint`) are the format, and are kept together so that they change together.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import zipfile
from pathlib import Path

import torch

from vae_edge.runtime.files import FileCheckError, atomic_path, open_regular

from .config import TEXT_ARCHS, VAEConfig
from .text import TextVAEConfig, build_text_model
from .vae import VAE, build_model

FORMAT = "vae-edge/1"
REQUIRED_KEYS = ("format", "config", "state_dict", "data")
MAX_CHECKPOINT_BYTES = 8 << 30  # model.pt is read from an opened regular file of at most this size
_MAX_DEPTH = 16  # nesting of plain data (metrics, history rows, train_config) that a checkpoint may hold


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
    """``torch.save`` to a temporary file, fsync, rename: a crash leaves the old file or the new one
    (and a killed writer's temporary file is removed by the next save, see ``atomic_path``).

    Serialised in memory first and written with a plain write, so that a full disk is an OSError
    naming ``path`` ("No space left on device"), not torch's zip writer's ``unexpected pos``.

    Raises:
        OSError: ``path`` cannot be written, naming it.
    """
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and check a model.pt dict without building the model: a regular file (a FIFO, a device
    or a link to one is refused before reading), read with ``weights_only=True``, then the one schema
    check of its entries (:func:`check_checkpoint`).

    Raises:
        CheckpointError: with a one-line reason naming the file.
    """
    path = Path(path)
    try:
        with open_regular(path, MAX_CHECKPOINT_BYTES) as (f, _size):
            if not zipfile.is_zipfile(f):
                # torch.save writes a zip archive; anything else is not ours (and old pickle-only files are refused).
                raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (not a torch.save zip archive)")
            f.seek(0)
            ckpt = torch.load(f, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise  # already one line naming the file; the broad ValueError clause below would wrap it again
    except FileCheckError as exc:
        raise CheckpointError(f"{path}: no such checkpoint file" if exc.missing else str(exc)) from None
    except pickle.UnpicklingError as exc:
        # weights_only refuses arbitrary classes and callables: the file would have run code on load.
        raise CheckpointError(
            f"{path}: refused, the file holds pickled objects other than tensors and plain data ({_why(exc)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, MemoryError, OverflowError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first})") from None
    check_checkpoint(ckpt, str(path))
    return ckpt


def check_checkpoint(ckpt: object, source: str = "checkpoint") -> None:
    """The one schema check of a model.pt dict, before any entry is used: every entry the tools read
    has the type and range the writer gives it, and the config's sizes agree with the weights (compared
    on a model built on the ``meta`` device, which allocates nothing: a small file claiming
    ``hidden_dims=[20000, 20000]`` costs no memory).

    Raises:
        CheckpointError: ``source`` and the first entry that is wrong.
    """
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{source}: not a vae-edge checkpoint (format {_show(found)}, expected {FORMAT!r})")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{source}: checkpoint lacks {', '.join(missing)}")
    wrong = [k for k in ("config", "state_dict", "data") if not isinstance(ckpt[k], dict)]
    if wrong:
        raise CheckpointError(f"{source}: checkpoint entries {', '.join(wrong)} must be dicts")

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise CheckpointError(f"{source}: {what}")

    config = _check_config(ckpt["config"], need)
    weights = ckpt["state_dict"]
    need(all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()), "state_dict must map names to tensors")
    _check_sizes(config, weights, need, "state_dict")
    _check_data(ckpt["data"], config, need)
    need(ckpt.get("metrics") is None or (isinstance(ckpt["metrics"], dict) and _plain(ckpt["metrics"])),
         f"metrics must be a dict of plain numbers and strings, got {_show(ckpt.get('metrics'))}")
    _check_optimizer(ckpt.get("optimizer"), need)
    _check_train_state(ckpt.get("train_state"), weights, need)


def _show(value: object) -> str:
    """A value for a message, shallowly (messages are built whether or not a check fails: cheap)."""
    from vae_edge.runtime.validation import quote

    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if isinstance(value, dict):
        keys = list(value)[:4]
        return f"a dict with keys {quote(keys)[1:-1] if keys else 'none'}{', ...' if len(value) > 4 else ''}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}" if any(isinstance(v, (dict, list, tuple, torch.Tensor)) for v in value) else quote(list(value))
    return quote(value)


def _is_int(v: object, minimum: int | None = None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and (minimum is None or v >= minimum)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _plain(value: object, depth: int = 0) -> bool:
    """JSON-like data only (what the manifest copies and ``json.dumps`` takes): no tensors, bounded nesting."""
    if depth > _MAX_DEPTH:
        return False
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _check_config(config: dict, need) -> VAEConfig | TextVAEConfig:
    for key in ("input_shape", "hidden_dims", "channels"):
        if key in config:
            v = config[key]
            need(isinstance(v, (list, tuple)) and all(_is_int(d, 1) for d in v), f"config.{key} must be a list of positive integers, got {_show(v)}")
    need(_is_int(config.get("latent_dim", 8), 1), f"config.latent_dim must be a positive integer, got {_show(config.get('latent_dim'))}")
    for key in ("arch", "likelihood", "decoder_style", "activation"):
        need(isinstance(config.get(key, ""), str), f"config.{key} must be a string, got {_show(config.get(key))}")
    std = config.get("gaussian_std")
    need(std is None or _is_number(std), f"config.gaussian_std must be a number or null, got {_show(std)}")
    try:
        if config.get("arch") in TEXT_ARCHS:  # the sentence VAE of models/text.py
            return TextVAEConfig.from_dict(dict(config))
        return VAEConfig.from_dict(dict(config))
    except (TypeError, ValueError, OverflowError) as exc:
        need(False, f"config is not a VAEConfig ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})")


def _check_sizes(config: VAEConfig, weights: dict, need, entry: str) -> None:
    """The weights have exactly the names and shapes of the model the config describes."""
    try:
        with torch.device("meta"):
            model = build_text_model(config) if isinstance(config, TextVAEConfig) else build_model(config)
            expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
        need(False, f"config describes no buildable model ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})")
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    need(not missing and not extra, f"weights do not match its config ({entry} lacks {missing[:3]}, has unexpected {extra[:3]})")
    wrong = [k for k in expected if tuple(weights[k].shape) != expected[k]]
    need(not wrong, f"weights do not match its config ({entry}[{wrong[0] if wrong else ''!r}] has shape {list(weights[wrong[0]].shape) if wrong else ''}, the config gives {list(expected[wrong[0]]) if wrong else ''})")


def _per_feature_ok(value: object, shape: list, positive: bool) -> bool:
    import numpy as np

    if _is_number(value):
        return math.isfinite(value) and (value > 0 or not positive)
    if not isinstance(value, list) or not _plain(value):
        return False
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return list(arr.shape) == list(shape) and bool(np.isfinite(arr).all()) and (not positive or bool((arr > 0).all()))


def _check_data(data: dict, config: VAEConfig, need) -> None:
    for key in ("spec", "dataset", "kind", "likelihood"):
        if key in data:
            need(isinstance(data[key], str), f"data.{key} must be a string, got {_show(data[key])}")
    if isinstance(config, TextVAEConfig):  # token ids of any length: no sample shape, no preprocessing
        need(_plain(data), "data must hold plain data only (no tensors)")
        return
    shape = data.get("shape", list(config.input_shape))
    need(isinstance(shape, list) and all(_is_int(d, 1) for d in shape) and tuple(shape) == config.input_shape,
         f"data.shape must be the config's input_shape {list(config.input_shape)}, got {_show(shape)}")
    pre = data.get("preprocessing")
    if pre is not None:
        need(isinstance(pre, dict) and pre.get("kind") == "affine" and _per_feature_ok(pre.get("offset"), shape, False) and _per_feature_ok(pre.get("scale"), shape, True),
             f"data.preprocessing must be {{kind: affine, offset, scale > 0}}, each a number or a list of shape {shape}, got {_show(pre)}")
    for key in ("sizes", "split_seed"):
        if key in data:
            need(_plain(data[key]), f"data.{key} must be plain data, got {_show(data[key])}")
    if "sizes" in data:
        need(isinstance(data["sizes"], dict) and all(_is_int(v, 0) for v in data["sizes"].values()), f"data.sizes must map splits to counts, got {_show(data['sizes'])}")
    need(_plain({k: v for k, v in data.items()}), "data must hold plain data only (no tensors)")


def _check_optimizer(opt: object, need) -> None:
    if opt is None:
        return
    need(isinstance(opt, dict) and isinstance(opt.get("state"), dict) and isinstance(opt.get("param_groups"), list),
         f"optimizer must be an optimizer state dict ({{state, param_groups}}) or null, got {_show(opt)}")
    for group in opt["param_groups"]:
        need(isinstance(group, dict) and isinstance(group.get("params"), list) and all(_is_int(i, 0) for i in group["params"]),
             f"optimizer.param_groups must hold dicts with integer params, got {_show(group)}")
        need(_plain({k: v for k, v in group.items() if k != "params"}), "optimizer.param_groups must hold plain settings")
    for key, state in opt["state"].items():
        need(_is_int(key, 0) and isinstance(state, dict) and all(isinstance(v, torch.Tensor) or _is_number(v) for v in state.values()),
             f"optimizer.state must map parameter indices to tensors and numbers, got {_show(key)}: {_show(state)}")


def _check_train_state(ts: object, weights: dict, need) -> None:
    if ts is None:
        return
    need(isinstance(ts, dict), f"train_state must be a dict, got {_show(ts)}")
    for key in ("epoch", "best_epoch", "epochs_without_improvement"):
        if key in ts:
            need(_is_int(ts[key], 0), f"train_state.{key} must be a non-negative integer, got {_show(ts[key])}")
    if "best_val_elbo" in ts:
        need(_is_number(ts["best_val_elbo"]), f"train_state.best_val_elbo must be a number, got {_show(ts['best_val_elbo'])}")
    if "stopped_early" in ts:
        need(isinstance(ts["stopped_early"], bool), f"train_state.stopped_early must be true or false, got {_show(ts['stopped_early'])}")
    if "history" in ts:
        need(isinstance(ts["history"], list) and all(isinstance(row, dict) and _plain(row) for row in ts["history"]),
             f"train_state.history must be a list of dicts of numbers, got {_show(ts['history'])}")
        need(all(_is_number(row.get("val_elbo", 0.0)) and _is_int(row.get("epoch", 0), 0) for row in ts["history"]), "train_state.history rows need numeric epoch and val_elbo")
    if "train_config" in ts:
        need(isinstance(ts["train_config"], dict) and _plain(ts["train_config"]), f"train_state.train_config must be a dict of settings, got {_show(ts['train_config'])}")
    if "rng" in ts:
        rng = ts["rng"]
        like = torch.get_rng_state()
        need(isinstance(rng, dict), f"train_state.rng must be a dict of generator states, got {_show(rng)}")
        if "torch" in rng:
            t = rng["torch"]
            need(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.shape == like.shape, f"train_state.rng.torch must be a torch generator state, got {_show(t)}")
        if "cuda" in rng:
            need(isinstance(rng["cuda"], (list, tuple)) and all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for t in rng["cuda"]), "train_state.rng.cuda must be a list of CUDA generator states")
    if "last_state_dict" in ts:
        last = ts["last_state_dict"]
        need(isinstance(last, dict) and set(last) == set(weights) and all(isinstance(v, torch.Tensor) and v.shape == weights[k].shape for k, v in last.items()),
             "train_state.last_state_dict must have the names and shapes of state_dict")
    if "weight_average" in ts:
        avg = ts["weight_average"]
        need(isinstance(avg, dict) and _is_int(avg.get("steps"), 0) and isinstance(avg.get("state_dict"), dict)
             and set(avg["state_dict"]) == set(weights) and all(isinstance(v, torch.Tensor) and v.shape == weights[k].shape for k, v in avg["state_dict"].items()),
             "train_state.weight_average must hold a step count and a state_dict with the names and shapes of state_dict")


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
    check_checkpoint(ckpt, source)  # sizes against the weights before anything is allocated
    try:
        if ckpt["config"].get("arch") in TEXT_ARCHS:  # the sentence VAE of models/text.py
            model = build_text_model(TextVAEConfig.from_dict(dict(ckpt["config"])))
        else:
            model = build_model(VAEConfig.from_dict(dict(ckpt["config"])))
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
