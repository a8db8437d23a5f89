"""vae-train: parse options, call the training loop, save model.pt and its grids. Torch loads inside main()."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from vae_edge.runtime.clitools import output_path, require_workstation_extras, run_cli, writable


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vae-edge")
@click.option("--data", "data_spec", default="digits", show_default=True, help="Data set: digits (scikit-learn's bundled 8x8 digits).")
@click.option("--arch", type=click.Choice(["mlp", "conv", "conv1d"]), default="mlp", show_default=True, help="Encoder/decoder architecture: conv for images [C, H, W], conv1d for sequences [C, L] or [L].")
@click.option("--latent", type=click.IntRange(min=1), default=8, show_default=True, help="Latent dimensions.")
@click.option("--hidden", type=click.IntRange(min=1), multiple=True, default=(400,), show_default=True, help="MLP hidden layer width (repeat for more layers).")
@click.option("--channels", type=click.IntRange(min=1), multiple=True, default=(32, 64), show_default=True, help="conv/conv1d: width of each stride-2 layer (repeat; each halves the size).")
@click.option("--decoder-style", type=click.Choice(["transpose", "upsample"]), default="transpose", show_default=True, help="conv/conv1d decoder: ConvTranspose, or nearest Upsample + Conv.")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, max=10, min_open=True), default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--beta", type=click.FloatRange(min=0), default=1.0, show_default=True, help="KL weight (1 = the ELBO).")
@click.option("--kl-warmup", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Epochs over which the KL weight ramps up from 0.")
@click.option("--likelihood", type=click.Choice(["bernoulli", "gaussian"]), default="bernoulli", show_default=True, help="p(x|z): bernoulli (data scaled to [0, 1]) or gaussian (data standardised per feature).")
@click.option("--gaussian-std", type=click.FloatRange(min=0, min_open=True), default=None, help="gaussian: fixed std of p(x|z) in standardised units (omitted: learned per feature).")
@click.option("--iw-samples", type=click.IntRange(min=1), default=1000, show_default=True, help="K for the importance-weighted NLL estimate on the test split.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("model.pt"), show_default=True, callback=output_path(), help="Checkpoint to write; PNG grids go beside it.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def cli(data_spec, arch, latent, hidden, channels, decoder_style, epochs, batch_size, lr, beta, kl_warmup, likelihood, gaussian_std, iw_samples, seed, device, out, quiet):
    """Train a VAE and write MODEL.pt, plus PNG grids of test reconstructions and samples beside it."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    require_workstation_extras("vae-train")
    from vae_edge.models import VAEConfig

    from .checkpoint import make_checkpoint, save_checkpoint
    from .data import DataError, load_data
    from .grids import grid_paths, reconstruction_grid, sample_grid
    from .loop import TrainConfig, train, train_state

    # Grids go beside model.pt; not beside a device such as /dev/null.
    beside_file = not (out.exists() and not out.is_file())
    if beside_file:
        for grid in grid_paths(out):
            writable(grid)

    try:
        data = load_data(data_spec, likelihood=likelihood)
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None
    try:
        model_config = VAEConfig(
            input_shape=data.shape, latent_dim=latent, hidden_dims=hidden, arch=arch, likelihood=likelihood,
            gaussian_std=gaussian_std, channels=channels, decoder_style=decoder_style,
        )
        config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, beta=beta, kl_warmup=kl_warmup, seed=seed, device=device, iw_samples=iw_samples, quiet=quiet)
        result = train(model_config, data, config)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except RuntimeError as exc:  # TrainingError, or torch failing (e.g. out of memory, overflow)
        raise click.ClickException((str(exc).strip().splitlines() or [type(exc).__name__])[0]) from None

    ckpt = make_checkpoint(result.model, data=data.describe(), metrics=result.metrics, optimizer=result.optimizer, train_state=train_state(config, result))
    try:
        save_checkpoint(out, ckpt)
        grids = []
        if data.kind == "image" and beside_file:
            recon_path, samples_path = grid_paths(out)
            grids = [
                reconstruction_grid(result.model, data.to_model(data.test), recon_path, display=data.to_display),
                sample_grid(result.model, samples_path, seed=seed, display=data.to_display),
            ]
    except OSError as exc:
        raise click.ClickException(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from None

    m = result.metrics
    click.echo(f"data      {data.name}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test, shape {list(data.shape)}")
    widths = f"hidden {list(hidden)}" if arch == "mlp" else f"channels {list(channels)} ({decoder_style} decoder)"
    noise = "" if likelihood != "gaussian" else f" (std {gaussian_std:g})" if gaussian_std else " (learned variance)"
    click.echo(f"model     {arch} {list(data.shape)}, {widths}, latent {latent}, {likelihood}{noise}")
    click.echo(f"train     ELBO {m['train_elbo']:.2f} nats/sample after {m['epochs']} epochs ({m['epoch_seconds'] * 1000:.0f} ms/epoch on {m['device']})")
    click.echo(f"test      ELBO {m['test_elbo']:.2f} nats/sample (recon {m['test_recon_nll']:.2f} + KL {m['test_kl']:.2f}), IWAE NLL {m['test_iwae_nll']:.2f} (K={m['iw_samples']})")
    click.echo(f"wrote     {out}")
    for g in grids:
        click.echo(f"wrote     {g}")


def main() -> None:
    """Console-script entry point."""
    run_cli(cli, prog_name="vae-train")
