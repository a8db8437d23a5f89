"""vae-train: parse options, call the training loop (which writes model.pt every epoch), then the grids.
Torch loads inside the command."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click
from click.core import ParameterSource

from vae_edge.runtime.clitools import require_workstation_extras, run_cli, writable

DATA_HELP = (
    "Data set: digits (scikit-learn's bundled 8x8 digits) | idx:PATH (MNIST-format IDX images, .gz allowed) | "
    "images:DIR (PNG/JPEG files under DIR, see --size) | npy:PATH (.npy; or PATH.npz:KEY, KEY optional for a one-array .npz)."
)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vae-edge")
@click.option("--data", "data_spec", default="digits", show_default=True, help=DATA_HELP)
@click.option("--size", default=None, metavar="HxW", help="Resize images:DIR images to this size (default: their common size).")
@click.option("--arch", type=click.Choice(["mlp", "conv", "conv1d"]), default="mlp", show_default=True, help="Encoder/decoder architecture: conv for images [C, H, W], conv1d for sequences [C, L] or [L].")
@click.option("--latent", type=click.IntRange(min=1), default=8, show_default=True, help="Latent dimensions.")
@click.option("--hidden", type=click.IntRange(min=1), multiple=True, default=(400,), show_default=True, help="MLP hidden layer width (repeat for more layers).")
@click.option("--channels", type=click.IntRange(min=1), multiple=True, default=(32, 64), show_default=True, help="conv/conv1d: width of each stride-2 layer (repeat; each halves the size).")
@click.option("--decoder-style", type=click.Choice(["subpixel", "transpose", "upsample"]), default="subpixel", show_default=True, help="conv/conv1d decoder upsampling: sub-pixel (Conv + PixelShuffle; its int8-static variant is the fastest), ConvTranspose, or nearest Upsample + Conv.")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True, help="Epochs in all (with --resume: including those already trained).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Samples per step (per process under torchrun).")
@click.option("--lr", type=click.FloatRange(min=0, max=10, min_open=True), default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--beta", type=click.FloatRange(min=0), default=1.0, show_default=True, help="KL weight (1 = the ELBO).")
@click.option("--kl-warmup", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Epochs over which the KL weight ramps up from 0.")
@click.option("--likelihood", type=click.Choice(["bernoulli", "gaussian"]), default="bernoulli", show_default=True, help="p(x|z): bernoulli (data scaled to [0, 1]) or gaussian (data standardised per feature).")
@click.option("--gaussian-std", type=click.FloatRange(min=0, min_open=True), default=None, help="gaussian: fixed std of p(x|z) in standardised units (omitted: learned per feature).")
@click.option("--patience", type=click.IntRange(min=0), default=0, show_default=True, help="Stop after N epochs without a better validation ELBO and keep the best epoch (0: never).")
@click.option("--iw-samples", type=click.IntRange(min=1), default=1000, show_default=True, help="K for the importance-weighted NLL estimate on the test split.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--resume", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Continue the run saved in this model.pt (its settings are the defaults; --out defaults to it).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("model.pt"), show_default=True, help="Checkpoint to write after every epoch; grids, metrics.json and loss curve go beside it.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.pass_context
def cli(ctx, **options):
    """Train a VAE and write MODEL.pt, plus PNG grids of test reconstructions and samples, a loss curve
    and a metrics file beside it. Distributed: torchrun --nproc_per_node=N -m vae_edge.trainer ..."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    require_workstation_extras("vae-train")
    from vae_edge.models import CheckpointError, VAEConfig, read_checkpoint

    from .curves import output_paths
    from .data import DataError, data_files, load_data
    from .distributed import is_main_process
    from .grids import grid_paths, reconstruction_grid, sample_grid
    from .loop import TrainConfig, resume_settings, train
    from .readers import parse_size

    o = options
    given = {name for name in o if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)}
    ckpt = None
    if o["resume"] is not None:
        try:
            ckpt = read_checkpoint(o["resume"])
        except CheckpointError as exc:
            raise click.BadParameter(str(exc), param_hint="--resume") from None
        # Options left out take the checkpoint's values, so `vae-train --resume model.pt` just continues.
        o.update({k: v for k, v in resume_settings(ckpt).items() if k not in given})
        if "out" not in given:
            o["out"] = o["resume"]
        shape = ckpt["data"].get("shape") or []
        if "size" not in given and o["data_spec"].startswith("images:") and len(shape) == 3:
            o["size"] = f"{shape[1]}x{shape[2]}"
    try:
        out = writable(o["out"])
        # Files beside model.pt; not beside a device such as /dev/null.
        beside_file = not (out.exists() and not out.is_file())
        written_paths = [out, *grid_paths(out), *output_paths(out)] if beside_file else []
        for side in written_paths[1:]:
            writable(side)
    except click.BadParameter as exc:
        exc.param_hint = "--out"  # writable() is called here, not as an option callback: name the option
        raise
    try:
        inputs = {os.path.realpath(p): p for p in data_files(o["data_spec"])}
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None
    for path in written_paths:
        if os.path.realpath(path) in inputs:
            raise click.BadParameter(f"{path}: would overwrite the --data file {inputs[os.path.realpath(path)]}", param_hint="--out")

    if o["data_spec"].startswith("images:") and beside_file and out.resolve().is_relative_to(Path(o["data_spec"][7:]).resolve()):
        raise click.BadParameter("is inside the images:DIR folder, whose PNG outputs would become training data", param_hint="--out")
    # Options of the other architecture would be ignored without a word; say so instead.
    unused = {"mlp": ("channels", "decoder_style")}.get(o["arch"], ("hidden",))
    for name in (n for n in unused if n in given):
        raise click.BadParameter(f"does not apply to --arch {o['arch']}", param_hint=f"--{name.replace('_', '-')}")
    if o["size"] and not o["data_spec"].startswith("images:"):
        raise click.BadParameter("applies to --data images:DIR only", param_hint="--size")
    try:
        size = parse_size(o["size"]) if o["size"] else None
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint="--size") from None
    try:
        data = load_data(o["data_spec"], o["likelihood"], size=size, sequences=o["arch"] == "conv1d")
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None
    try:
        model_config = VAEConfig(
            input_shape=data.shape, latent_dim=o["latent"], hidden_dims=o["hidden"], arch=o["arch"], likelihood=o["likelihood"],
            gaussian_std=o["gaussian_std"], channels=o["channels"], decoder_style=o["decoder_style"],
        )
        keys = ("epochs", "batch_size", "lr", "beta", "kl_warmup", "seed", "device", "iw_samples", "patience", "quiet")
        config = TrainConfig(**{k: o[k] for k in keys})
        result = train(model_config, data, config, out=out, side_outputs=beside_file, resume=ckpt)
    except ValueError as exc:  # bad settings, or a checkpoint that these settings cannot continue
        raise click.UsageError(str(exc)) from None
    except RuntimeError as exc:  # TrainingError, or torch failing (e.g. out of memory, overflow)
        raise click.ClickException((str(exc).strip().splitlines() or [type(exc).__name__])[0]) from None

    if not is_main_process():
        return
    written = [out]
    if beside_file:
        written += output_paths(out)
        if data.kind == "image" and data.shape[0] in (1, 3):
            recon_path, samples_path = grid_paths(out)
            written += [
                reconstruction_grid(result.model, data.to_model(data.test), recon_path, display=data.to_display),
                sample_grid(result.model, samples_path, seed=config.seed, display=data.to_display),
            ]

    m, mc = result.metrics, model_config
    widths = f"hidden {list(mc.hidden_dims)}" if mc.arch == "mlp" else f"channels {list(mc.channels)} ({mc.decoder_style} decoder)"
    noise = "" if mc.likelihood != "gaussian" else f" (std {mc.gaussian_std:g})" if mc.gaussian_std else " (learned variance)"
    stopped = f", stopped early, kept epoch {m['best_epoch']}" if m["stopped_early"] else ""
    click.echo(f"data      {data.name}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test, shape {list(data.shape)}")
    click.echo(f"model     {mc.arch} {list(data.shape)}, {widths}, latent {mc.latent_dim}, {mc.likelihood}{noise}")
    click.echo(f"train     ELBO {m['train_elbo']:.2f} nats/sample after {m['epochs']} epochs{stopped} ({m['epoch_seconds'] * 1000:.0f} ms/epoch on {m['device']} x{m['world_size']})")
    click.echo(f"test      ELBO {m['test_elbo']:.2f} nats/sample (recon {m['test_recon_nll']:.2f} + KL {m['test_kl']:.2f}), IWAE NLL {m['test_iwae_nll']:.2f} (K={m['iw_samples']})")
    for path in written:
        click.echo(f"wrote     {path}")


def main() -> None:
    """Console-script entry point."""
    run_cli(cli, prog_name="vae-train")
