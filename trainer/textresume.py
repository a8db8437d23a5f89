"""The state of a text run that model.pt keeps, so that ``vae-train --resume`` continues an interrupted
sentence-VAE run (and ends where an uninterrupted one would), and that early stopping decides on.
The image trainer's twin (trainer/resume.py) checks a VAEConfig and image data; this one a
TextVAEConfig and the text's vocabulary."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field


from vae_edge.models.text import SentenceVAE, TextVAEConfig

from .resume import ResumeError, cpu_copy
from .textdata import TextData

log = logging.getLogger(__name__)

# Settings that must not change between an interrupted text run and its continuation.
TEXT_RESUME_FIXED = ("batch_size", "lr", "beta", "kl_warmup", "token_dropout", "token_dropout_epochs", "free_bits",
                     "objective", "iw_train", "seed", "patience")
# vae-train option -> TextTrainConfig field that --resume takes from the checkpoint when the option is left out.
TEXT_TRAIN_OPTIONS = ("epochs", "batch_size", "lr", "beta", "kl_warmup", "token_dropout", "token_dropout_epochs", "free_bits",
                      "objective", "iw_train", "seed", "iw_samples", "patience")


@dataclass
class TextRun:
    """Progress of a text run: epochs done, history, and the best epoch by the validation bound."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_bound: float = -math.inf
    best_weights: dict | None = None  # CPU copy, kept only with early stopping
    stale: int = 0  # epochs since the best one
    stopped_early: bool = False

    def record(self, row: dict, model: SentenceVAE, *, keep_best: bool) -> None:
        """Add one epoch's row; keep the weights when its ``val_bound`` is the best so far and ``keep_best``."""
        self.epoch = row["epoch"]
        self.history.append(row)
        if row["val_bound"] > self.best_val_bound:
            self.best_epoch, self.best_val_bound, self.stale = row["epoch"], row["val_bound"], 0
            if keep_best:
                self.best_weights = cpu_copy(model.state_dict())
        else:
            self.stale += 1

    def weights(self, model: SentenceVAE) -> dict:
        """The weights model.pt serves: the best epoch's under early stopping, else the latest."""
        return self.best_weights if self.best_weights is not None else cpu_copy(model.state_dict())

    def state(self, config, model: SentenceVAE) -> dict:
        """model.pt's ``train_state``: plain data and tensors only (``torch.load(weights_only=True)``)."""
        state = {
            "epoch": self.epoch, "train_config": asdict(config), "history": list(self.history),
            "best_epoch": self.best_epoch, "best_val_bound": self.best_val_bound,
            "epochs_without_improvement": self.stale, "stopped_early": self.stopped_early,
        }
        if self.best_weights is not None and self.best_epoch != self.epoch:
            state["last_state_dict"] = cpu_copy(model.state_dict())  # where --resume continues from
        return state


def restore_text(ckpt: dict, model: SentenceVAE, optimizer, model_config: TextVAEConfig, data: TextData, config) -> TextRun:
    """Load a text checkpoint's weights and optimizer into ``model`` and ``optimizer``.

    Returns:
        the run's progress as the checkpoint recorded it.

    Raises:
        ResumeError: no training state, nothing left to train, or other model settings, vocabulary or
            fixed settings (:data:`TEXT_RESUME_FIXED`).
    """
    ts = ckpt.get("train_state") or {}
    if "epoch" not in ts or "history" not in ts or not ckpt.get("optimizer"):
        raise ResumeError("the checkpoint holds no training state to resume (optimizer, epoch)")
    if ts.get("stopped_early"):
        raise ResumeError(f"training stopped early at epoch {ts['epoch']} (best epoch {ts.get('best_epoch')}); there is nothing to resume")
    if ts["epoch"] >= config.epochs:
        raise ResumeError(f"the checkpoint has trained {ts['epoch']} epochs already; ask for more with --epochs")
    vocab = (ckpt.get("data") or {}).get("vocabulary") or {}
    if list(vocab.get("chars") or []) != list(data.vocab.chars) or vocab.get("max_len") != data.vocab.max_len:
        raise ResumeError(f"{data.spec!r} gives another vocabulary than the checkpoint was trained with (other data?)")
    try:
        saved = TextVAEConfig.from_dict(dict(ckpt.get("config") or {})).to_dict()
    except (TypeError, ValueError) as exc:
        raise ResumeError(f"the checkpoint is not a text model's ({exc})") from None
    differ = [f"{k} ({saved[k]} -> {v})" for k, v in model_config.to_dict().items() if saved.get(k) != v]
    if differ:
        raise ResumeError(f"the model settings differ from the checkpoint's: {', '.join(differ)}")
    before = ts.get("train_config") or {}
    changed = [f"{k} ({before[k]} -> {getattr(config, k)})" for k in TEXT_RESUME_FIXED if k in before and before[k] != getattr(config, k)]
    if changed:
        raise ResumeError(f"cannot change {', '.join(changed)} when resuming")
    try:
        model.load_state_dict(ts.get("last_state_dict") or ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ResumeError(f"the checkpoint's training state cannot be restored ({(str(exc).strip().splitlines() or [type(exc).__name__])[0]})") from None
    run = TextRun(epoch=int(ts["epoch"]), history=list(ts["history"]), best_epoch=int(ts.get("best_epoch", 0)),
                  best_val_bound=float(ts.get("best_val_bound", -math.inf)), stale=int(ts.get("epochs_without_improvement", 0)))
    if config.patience and run.best_epoch:
        run.best_weights = cpu_copy(ckpt["state_dict"])  # with patience, state_dict holds the best epoch
    log.info("resuming text training after epoch %d of %d", run.epoch, config.epochs)
    return run


def text_resume_settings(ckpt: dict) -> dict:
    """The settings a text checkpoint was trained with, by vae-train option name, for --resume to default to."""
    config = ckpt.get("config") or {}
    train_config = (ckpt.get("train_state") or {}).get("train_config") or {}
    data = ckpt.get("data") or {}
    settings = {k: train_config[k] for k in TEXT_TRAIN_OPTIONS if k in train_config}
    if settings.get("objective") != "iwae":
        settings.pop("iw_train", None)  # not an option of the ELBO's run (vae-train refuses it there)
    settings.update({"latent": config.get("latent_dim"), "embed": config.get("embed_dim"), "arch": config.get("arch"),
                     "hidden": (config["hidden_dim"],) if "hidden_dim" in config else None,
                     "max_len": (data.get("vocabulary") or {}).get("max_len"),
                     "long_lines": (data.get("reading") or {}).get("long_line_policy"), "data_spec": data.get("spec")})
    return {k: v for k, v in settings.items() if v is not None}
