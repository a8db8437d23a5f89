"""vae-train: parse options, call the training loop, save model.pt and its grids. Torch loads inside main()."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from vae_edge.runtime.clitools import output_path, require_workstation_extras, run_cli, writable


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vae-edge")
@click.option("--data", "data_spec", default="digits", show_default=True, help="Data set: digits (scikit-learn's bundled 8x8 digits).")
@click.option("--arch", type=click.Choice(["mlp"]), default="mlp", show_default=True, help="Encoder/decoder architecture.")
@click.option("--latent", type=click.IntRange(min=1), default=8, show_default=True, help="Latent dimensions.")
@click.option("--hidden", type=click.IntRange(min=1), multiple=True, default=(400,), show_default=True, help="Hidden layer width (repeat for more layers).")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, max=10, min_open=True), default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--beta", type=click.FloatRange(min=0), default=1.0, show_default=True, help="KL weight (1 = the ELBO).")
@click.option("--kl-warmup", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Epochs over which the KL weight ramps up from 0.")
@click.option("--likelihood", type=click.Choice(["bernoulli"]), default="bernoulli", show_default=True, help="p(x|z).")
@click.option("--iw-samples", type=click.IntRange(min=1), default=1000, show_default=True, help="K for the importance-weighted NLL estimate on the test split.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("model.pt"), show_default=True, callback=output_path(), help="Checkpoint to write; PNG grids go beside it.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def cli(data_spec, arch, latent, hidden, epochs, batch_size, lr, beta, kl_warmup, likelihood, iw_samples, seed, device, out, quiet):
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
        data = load_data(data_spec)
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None
    try:
        model_config = VAEConfig(input_shape=data.shape, latent_dim=latent, hidden_dims=hidden, arch=arch, likelihood=likelihood)
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
            grids = [reconstruction_grid(result.model, data.to_model(data.test), recon_path), sample_grid(result.model, samples_path, seed=seed)]
    except OSError as exc:
        raise click.ClickException(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from None

    m = result.metrics
    click.echo(f"data      {data.name}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test, shape {list(data.shape)}")
    click.echo(f"model     {arch} {data.shape} -> {list(hidden)} -> latent {latent}, {likelihood}")
    click.echo(f"train     ELBO {m['train_elbo']:.2f} nats/sample after {m['epochs']} epochs ({m['epoch_seconds'] * 1000:.0f} ms/epoch on {m['device']})")
    click.echo(f"test      ELBO {m['test_elbo']:.2f} nats/sample (recon {m['test_recon_nll']:.2f} + KL {m['test_kl']:.2f}), IWAE NLL {m['test_iwae_nll']:.2f} (K={m['iw_samples']})")
    click.echo(f"wrote     {out}")
    for g in grids:
        click.echo(f"wrote     {g}")


def main() -> None:
    """Console-script entry point."""
    run_cli(cli, prog_name="vae-train")
