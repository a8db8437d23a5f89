"""``vae-train --resume`` of a sentence-VAE run: the checks and the restore of a text checkpoint (its
TextVAEConfig, the text's vocabulary, the fixed settings). The run's progress, which early stopping
decides on and model.pt keeps, is the image trainer's :class:`~vae_edge.trainer.resume.Run`."""

from __future__ import annotations

import logging
from pathlib import Path

from vae_edge.models.text import SentenceVAE, TextVAEConfig

from .resume import ResumeError, Run, check_settings, load_training_state, resumable_state
from .textdata import TextData, recorded_text_spec

log = logging.getLogger(__name__)

# Settings that must not change between an interrupted text run and its continuation.
TEXT_RESUME_FIXED = ("batch_size", "lr", "beta", "kl_warmup", "token_dropout", "token_dropout_epochs", "free_bits",
                     "objective", "iw_train", "seed", "patience", "min_epoch_steps")
# vae-train option -> TextTrainConfig field that --resume takes from the checkpoint when the option is left out.
TEXT_TRAIN_OPTIONS = ("epochs", "batch_size", "lr", "beta", "kl_warmup", "token_dropout", "token_dropout_epochs", "free_bits",
                      "objective", "iw_train", "seed", "iw_samples", "patience", "min_epoch_steps")


def restore_text(ckpt: dict, model: SentenceVAE, optimizer, model_config: TextVAEConfig, data: TextData, config) -> Run:
    """Load a text checkpoint's weights and optimizer into ``model`` and ``optimizer``.

    Returns:
        the run's progress as the checkpoint recorded it.

    Raises:
        ResumeError: no training state, nothing left to train, or other model settings, vocabulary or
            fixed settings (:data:`TEXT_RESUME_FIXED`).
    """
    ts = resumable_state(ckpt, config)
    vocab = (ckpt.get("data") or {}).get("vocabulary") or {}
    if list(vocab.get("chars") or []) != list(data.vocab.chars) or vocab.get("max_len") != data.vocab.max_len:
        raise ResumeError(f"{data.spec!r} gives another vocabulary than the checkpoint was trained with (other data?)")
    try:
        saved = TextVAEConfig.from_dict(dict(ckpt.get("config") or {})).to_dict()
    except (TypeError, ValueError) as exc:
        raise ResumeError(f"the checkpoint is not a text model's ({exc})") from None
    check_settings(saved, model_config, ts, config, TEXT_RESUME_FIXED)
    run = load_training_state(ckpt, ts, model, optimizer, config)
    log.info("resuming text training after epoch %d of %d", run.epoch, config.epochs)
    return run


def text_resume_settings(ckpt: dict, base: Path | None = None) -> dict:
    """The settings a text checkpoint was trained with, by vae-train option name, for --resume to default to;
    its text where it is now (``base``: model.pt's folder; :func:`~vae_edge.trainer.textdata.recorded_text_spec`)."""
    config = ckpt.get("config") or {}
    train_config = (ckpt.get("train_state") or {}).get("train_config") or {}
    data = ckpt.get("data") or {}
    settings = {k: train_config[k] for k in TEXT_TRAIN_OPTIONS if k in train_config}
    settings.setdefault("min_epoch_steps", 1)  # a checkpoint from before the setting went over its data once an epoch
    if settings.get("objective") != "iwae":
        settings.pop("iw_train", None)  # not an option of the ELBO's run (vae-train refuses it there)
    settings.update({"latent": config.get("latent_dim"), "embed": config.get("embed_dim"), "arch": config.get("arch"),
                     "hidden": (config["hidden_dim"],) if "hidden_dim" in config else None,
                     "max_len": (data.get("vocabulary") or {}).get("max_len"),
                     "long_lines": (data.get("reading") or {}).get("long_line_policy"),
                     "data_spec": recorded_text_spec(data, base) if data.get("spec") else None})
    return {k: v for k, v in settings.items() if v is not None}
