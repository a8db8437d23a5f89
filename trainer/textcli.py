"""vae-train for ``--data text:FILE`` (``--arch gru``): the sentence VAE. Called by trainer/cli.py once
it sees a text spec; the image/vector options that do not apply are refused there."""

from __future__ import annotations

from pathlib import Path

import click

# vae-train options that mean nothing for a text model: refused when given, not silently ignored.
NOT_FOR_TEXT = ("size", "channels", "decoder_style", "likelihood", "gaussian_std", "lr_schedule", "tensorboard",
                "split_text", "val_spec", "test_spec", "ema", "iw_val", "iw_gradient", "prior", "prior_components", "weight_decay", "activation", "sample_rate", "duration", "window", "stride", "mels", "n_fft", "hop")
OPTION_NAMES = {"split_text": "--split", "val_spec": "--val-data", "test_spec": "--test-data"}  # where the option is not the field's name
DEFAULT_LATENT = 16
DEFAULT_HIDDEN = 128
# Early stopping on the validation bound, at most DEFAULT_EPOCHS: the sentence VAE needs ~30 epochs on
# 8,000 lines to match a converged language model (docs/text.md), a fixed count fits no corpus size.
DEFAULT_EPOCHS = 100
DEFAULT_PATIENCE = 3
DEFAULT_TOKEN_DROPOUT_EPOCHS = 0.0
DEFAULT_OBJECTIVE = "elbo"  # the measured text defaults are the ELBO's (free bits do not apply to the IW bound)


def train_text_command(o: dict, given: set[str], out: Path, beside_file: bool, ckpt: dict | None = None) -> None:
    """Train (or with ``ckpt``, a text checkpoint read for --resume, continue), write model.pt (+ metrics
    and loss curve) and print the summary.

    Raises:
        click.BadParameter / UsageError / ClickException: bad options or data (exit 2), failed training (exit 1).
    """
    from vae_edge.models.config import TEXT_ARCHS
    from vae_edge.models.text import TextVAEConfig

    from .curves import output_paths
    from .data import DataError
    from .loop import TrainingError
    from .resume import ResumeError
    from .textdata import load_text
    from .textloop import TextTrainConfig, train_text

    # What the sentence VAE does anyway may be asked for: its prior is N(0, I), its IWAE gradient the bound's own.
    own = {"prior": o.get("prior") in ("standard", "auto"), "iw_gradient": o.get("iw_gradient") == "standard"}
    for name in (n for n in NOT_FOR_TEXT if n in given and not own.get(n)):
        why = {"prior": "the sentence VAE's prior is N(0, I) (--prior standard)", "iw_gradient": "the sentence VAE's IWAE gradient is the bound's own (--iw-gradient standard)"}
        raise click.BadParameter(f"does not apply to --data text:FILE{': ' + why[name] if name in why else ''}", param_hint=OPTION_NAMES.get(name, f"--{name.replace('_', '-')}"))
    for name in ("iw_train", "iw_gradient"):
        if name in given and (o["objective"] if "objective" in given else DEFAULT_OBJECTIVE) != "iwae":
            raise click.BadParameter("applies to --objective iwae only", param_hint=f"--{name.replace('_', '-')}")
    if o["arch"] not in TEXT_ARCHS and "arch" in given:
        raise click.BadParameter("--data text:FILE trains the sentence VAE: use --arch gru", param_hint="--arch")
    try:
        data = load_text(o["data_spec"], max_len=o["max_len"], long_lines=o["long_lines"])
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None
    if "hidden" in given and len(o["hidden"]) > 1:
        raise click.BadParameter("a GRU has one hidden width", param_hint="--hidden")
    try:
        model_config = TextVAEConfig(
            vocab_size=data.vocab.size, max_len=data.vocab.max_len,
            latent_dim=o["latent"] if "latent" in given else DEFAULT_LATENT,
            embed_dim=o["embed"], hidden_dim=o["hidden"][0] if "hidden" in given else DEFAULT_HIDDEN,
        )
        config = TextTrainConfig(
            epochs=o["epochs"] if "epochs" in given else DEFAULT_EPOCHS, batch_size=o["batch_size"], min_epoch_steps=o["min_epoch_steps"], lr=o["lr"] if "lr" in given else 1e-3, beta=o["beta"],
            kl_warmup=o["kl_warmup"] if "kl_warmup" in given else 3.0, token_dropout=o["token_dropout"],
            token_dropout_epochs=o["token_dropout_epochs"] if "token_dropout_epochs" in given else DEFAULT_TOKEN_DROPOUT_EPOCHS, free_bits=o["free_bits"],
            objective=o["objective"] if "objective" in given else DEFAULT_OBJECTIVE, iw_train=o["iw_train"],
            seed=o["seed"], device=o["device"], iw_samples=o["iw_samples"] if "iw_samples" in given else 100,
            patience=o["patience"] if "patience" in given else DEFAULT_PATIENCE, quiet=o["quiet"],
        )
        result = train_text(model_config, data, config, out=out, side_outputs=beside_file, resume=ckpt)
    except ResumeError as exc:
        raise click.BadParameter(str(exc), param_hint="--resume") from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except (TrainingError, RuntimeError) as exc:
        raise click.ClickException((str(exc).strip().splitlines() or [type(exc).__name__])[0]) from None

    m, mc = result.metrics, model_config
    long = f", {data.long_lines} longer than {mc.max_len} characters {'cut' if data.long_policy == 'cut' else 'skipped'}" if data.long_lines else ""
    click.echo(f"data      {data.name}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test lines, "
               f"{len(data.vocab.chars)} characters + 4 specials; {data.blank_skipped} blank lines skipped{long}")
    click.echo(f"model     gru sentence VAE: embed {mc.embed_dim}, hidden {mc.hidden_dim}, latent {mc.latent_dim}, max {mc.max_len} characters")
    passes = m.get("passes_per_epoch", 1)
    passes = f" of {passes} passes each" if passes > 1 else ""
    kept = f", epoch {m['best_epoch']} kept (best validation bound){', stopped early' if m['stopped_early'] else ''}" if config.patience else ""
    click.echo(f"train     ELBO {m['train_elbo']:.2f} nats/line after {m['epochs']} epoch{'' if m['epochs'] == 1 else 's'}{passes}{kept} ({m['epoch_seconds']:.1f} s/epoch on {m['device']})")
    click.echo(f"test      ELBO {m['test_elbo']:.2f} nats/line (recon {m['test_recon_nll']:.2f} + KL {m['test_kl']:.2f}), "
               f"IW NLL {m['test_iwae_nll']:.2f} nats/line, {m['test_iwae_nll_per_char']:.3f} nats/char (K={m['iw_samples']}), "
               f"{m['active_units']}/{mc.latent_dim} active units, greedy exact match {m['test_exact_match']:.1%}")
    for path in [out, *(output_paths(out) if beside_file else ())]:
        click.echo(f"wrote     {path}")
