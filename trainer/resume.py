"""The state of a run that model.pt keeps, so that --resume continues where an interrupted run stopped
(and ends where an uninterrupted one would), and that early stopping decides on."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import torch

from vae_edge.models import VAE, VAEConfig
from vae_edge.models.config import LEGACY_DECODER_STYLE

from .averaging import WeightAverage
from .config import TrainConfig
from .data import Dataset, same_preprocessing

log = logging.getLogger(__name__)

# Settings that must not change between an interrupted run and its continuation.
RESUME_FIXED = ("batch_size", "lr", "weight_decay", "lr_schedule", "objective", "iw_train", "iw_val", "iw_gradient", "beta", "kl_warmup", "seed", "patience", "ema")


class ResumeError(ValueError):
    """The checkpoint given to --resume cannot be continued with these settings."""


@dataclass
class Run:
    """Progress of a run: what --resume restores and early stopping decides on."""

    epoch: int = 0  # epochs finished
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_bound: float = -math.inf  # of the training objective (the ELBO for objective "elbo")
    best_weights: dict | None = None  # CPU copy, kept only with early stopping
    stale: int = 0  # epochs since the best one
    stopped_early: bool = False
    curve_drawn: float = -math.inf  # time.monotonic() of the last loss-curve PNG
    average: WeightAverage | None = None  # with TrainConfig.ema: the averaged weights, which validation measures

    def record(self, row: dict, model: VAE, *, keep_best: bool) -> None:
        """Add one epoch's history row; keep the weights when it is the best so far and ``keep_best``."""
        self.epoch = row["epoch"]
        self.history.append(row)
        if row["val_bound"] > self.best_val_bound:
            self.best_epoch, self.best_val_bound, self.stale = row["epoch"], row["val_bound"], 0
            if keep_best:
                self.best_weights = cpu_copy(model.state_dict())
        else:
            self.stale += 1

    def check_patience(self, patience: int) -> bool:
        """Early stopping: marks the run stopped once ``patience`` (> 0) epochs gave no better validation
        bound; returns whether it is stopped."""
        if patience and self.stale >= patience and not self.stopped_early:
            self.stopped_early = True
            log.info("no better validation bound for %d epochs: stopping at epoch %d, keeping epoch %d", self.stale, self.epoch, self.best_epoch)
        return self.stopped_early

    def weights(self, model: VAE) -> dict:
        """The weights model.pt serves: the best epoch's under early stopping, else the latest (averaged with ``ema``)."""
        if self.best_weights is not None:
            return self.best_weights
        return self.average.weights() if self.average is not None else cpu_copy(model.state_dict())

    def state(self, config: TrainConfig, model: VAE) -> dict:
        """model.pt's ``train_state``: plain data and tensors only (``torch.load(weights_only=True)``)."""
        state = {
            "epoch": self.epoch,
            "train_config": asdict(config),
            "history": list(self.history),
            "best_epoch": self.best_epoch,
            "best_val_bound": self.best_val_bound,
            "epochs_without_improvement": self.stale,
            "stopped_early": self.stopped_early,
            "rng": {"torch": torch.get_rng_state()},
        }
        if torch.cuda.is_available() and next(model.parameters()).is_cuda:
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        if self.average is not None or (self.best_weights is not None and self.best_epoch != self.epoch):
            state["last_state_dict"] = cpu_copy(model.state_dict())  # where --resume continues from: not the served weights
        if self.average is not None:
            state["weight_average"] = self.average.state()
        return state


def resumable_state(ckpt: dict, config) -> dict:
    """model.pt's ``train_state``, when a run can continue from it with ``config`` (its ``epochs``).

    Raises:
        ResumeError: no training state, a run that stopped early, or nothing left to train.
    """
    ts = ckpt.get("train_state") or {}
    if "epoch" not in ts or "history" not in ts or not ckpt.get("optimizer"):
        raise ResumeError("the checkpoint holds no training state to resume (optimizer, epoch)")
    if ts.get("stopped_early"):
        raise ResumeError(f"training stopped early at epoch {ts['epoch']} (best epoch {ts.get('best_epoch')}); there is nothing to resume")
    if ts["epoch"] >= config.epochs:
        raise ResumeError(f"the checkpoint has trained {ts['epoch']} epochs already; ask for more with --epochs")
    return ts


def check_settings(saved: dict, model_config, ts: dict, config, fixed: tuple[str, ...]) -> None:
    """The model settings (``saved``: the checkpoint's config as a dict) and the ``fixed`` training
    settings must be the checkpoint's.

    Raises:
        ResumeError: naming each setting that differs, with its old and new value.
    """
    differ = [f"{k} ({saved[k]} -> {v})" for k, v in model_config.to_dict().items() if saved.get(k) != v]
    if differ:
        raise ResumeError(f"the model settings differ from the checkpoint's: {', '.join(differ)}")
    before = ts.get("train_config") or {}
    changed = [f"{k} ({before.get(k)} -> {getattr(config, k)})" for k in fixed if k in before and before[k] != getattr(config, k)]
    if changed:
        raise ResumeError(f"cannot change {', '.join(changed)} when resuming")


def load_training_state(ckpt: dict, ts: dict, model, optimizer, config) -> Run:
    """Load the weights to continue from, the optimizer and the RNG state into ``model`` and
    ``optimizer``.

    Returns:
        the run's progress as the checkpoint recorded it.

    Raises:
        ResumeError: what only torch can tell (an optimizer state for other parameters, a generator
            state it will not take); read_checkpoint checked every entry's type and the weights' shapes.
    """
    try:
        model.load_state_dict(ts.get("last_state_dict") or ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        rng = ts.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and next(model.parameters()).is_cuda:
            torch.cuda.set_rng_state_all(rng["cuda"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ResumeError(f"the checkpoint's training state cannot be restored ({(str(exc).strip().splitlines() or [type(exc).__name__])[0]})") from None
    run = Run(
        epoch=int(ts["epoch"]),
        history=list(ts["history"]),
        best_epoch=int(ts.get("best_epoch", 0)),
        best_val_bound=float(ts.get("best_val_bound", ts.get("best_val_elbo", -math.inf))),
        stale=int(ts.get("epochs_without_improvement", 0)),
    )
    if config.patience and run.best_epoch:
        run.best_weights = cpu_copy(ckpt["state_dict"])  # with patience, state_dict holds the best epoch
    return run


def restore(ckpt: dict, model: VAE, optimizer, model_config: VAEConfig, data: Dataset, config: TrainConfig) -> Run:
    """Load a checkpoint's weights, optimizer and RNG state into ``model`` and ``optimizer``.

    Returns:
        the run's progress as the checkpoint recorded it.

    Raises:
        ResumeError: the checkpoint holds no training state, has nothing left to train, or was trained
            with other model settings, data or fixed settings (:data:`RESUME_FIXED`).
    """
    ts = resumable_state(ckpt, config)
    recorded = ckpt.get("data") or {}
    # The data may have moved (another --data): the same shape and preprocessing is what must hold.
    if list(recorded.get("shape", [])) != list(data.shape):
        raise ResumeError(f"the checkpoint was trained on {recorded.get('spec')!r} {recorded.get('shape')}, not {data.spec!r} {list(data.shape)}")
    if isinstance(recorded.get("preprocessing"), dict) and not same_preprocessing(recorded["preprocessing"], data.preprocessing):
        raise ResumeError(f"{data.spec!r} gives another preprocessing than the checkpoint was trained with (other data?)")
    if isinstance(ts.get("train_config"), dict):  # saved before --weight-decay existed: trained without decay
        ts = {**ts, "train_config": {"weight_decay": 0.0, **ts["train_config"]}}
    check_settings(VAEConfig.from_dict(dict(ckpt["config"])).to_dict(), model_config, ts, config, RESUME_FIXED)
    run = load_training_state(ckpt, ts, model, optimizer, config)
    log.info("resuming after epoch %d of %d", run.epoch, config.epochs)
    return run


def resume_settings(ckpt: dict) -> dict:
    """The settings a checkpoint was trained with, by vae-train option name, for --resume to default to.

    Returns:
        e.g. {"data_spec": "digits", "latent": 8, "hidden": (400,), "lr": 0.001, "epochs": 100, ...};
        only what the checkpoint records.
    """
    config = ckpt.get("config") or {}
    train_config = (ckpt.get("train_state") or {}).get("train_config") or {}
    data = ckpt.get("data") or {}
    keys = ("epochs", "batch_size", "lr", "weight_decay", "lr_schedule", "objective", "iw_train", "iw_val", "iw_gradient", "beta", "kl_warmup", "seed", "iw_samples", "patience", "ema")
    settings = {k: train_config[k] for k in keys if k in train_config}
    if train_config and "iw_val" not in train_config:  # written before --iw-val: its validation bound used --iw-train's K
        settings["iw_val"] = 1
    if train_config and "objective" not in train_config:  # written before these options: it trained as they then were
        settings.update(objective="elbo", lr_schedule="constant", iw_train=1)
    settings.update({
        "latent": config.get("latent_dim"), "hidden": tuple(config.get("hidden_dims", ())), "arch": config.get("arch"),
        "likelihood": config.get("likelihood"), "gaussian_std": config.get("gaussian_std"),
        "channels": tuple(config.get("channels", ())), "decoder_style": config.get("decoder_style", LEGACY_DECODER_STYLE if config else None),
        "activation": config.get("activation"),
        # Before the field existed every model had the standard prior; --prior auto must not pick another.
        # The component count only for a VampPrior: a standard checkpoint resumed with --prior vamp then differs by its prior.
        **({"prior": config.get("prior", "standard")} if config else {}),
        **({"prior_components": config["prior_components"]} if config.get("prior") == "vamp" else {}),
    })
    if "spec" in data:
        settings["data_spec"] = data["spec"]
    kept = {k: v for k, v in settings.items() if v not in (None, ())}
    if config.get("arch", "mlp") == "mlp" and config.get("hidden_dims") == []:  # a linear MLP (--hidden 0)
        kept["hidden"] = ()
    return kept


def cpu_copy(state_dict: dict) -> dict:
    """A detached CPU copy of a state dict (kept across epochs, saved in model.pt)."""
    return {k: v.detach().cpu().clone() for k, v in state_dict.items()}
