"""vae-train: parse options, call the training loop (which writes model.pt every epoch), then the grids.

Option defaults and choices come from the dataclasses they fill (VAEConfig, TrainConfig), so that the
command and the library cannot drift apart. Torch loads inside the command.
"""

from __future__ import annotations

import logging
import os
from dataclasses import MISSING, fields
from pathlib import Path

import click
from click.core import ParameterSource

from vae_edge.models.config import ACTIVATIONS, ARCHS, DECODER_STYLES, LIKELIHOODS, PRIORS, TEXT_ARCHS, VAEConfig
from vae_edge.runtime.clitools import require_workstation_extras, run_cli, writable

from .config import DEFAULT_PRIOR_COMPONENTS, DEVICES, IW_GRADIENTS, LR_SCHEDULES, OBJECTIVES, TrainConfig, auto_prior

DATA_HELP = (
    "Data set: digits (scikit-learn's bundled 8x8 digits) | idx:PATH (MNIST-format IDX images, .gz allowed) | "
    "images:DIR (PNG/JPEG files under DIR, see --size) | npy:PATH (.npy; or PATH.npz:KEY, KEY optional for a one-array .npz) | "
    "csv:PATH (a header row, then numbers; see --columns, --window) | parquet:PATH (a Parquet table, the same rules) | "
    "audio:DIR (WAV/FLAC files under DIR: log-mel features, see --duration/--window; conv and gaussian unless given) | "
    "text:FILE (UTF-8, one sample a line; trains the sentence VAE, --arch gru)."
)
# vae-train option -> VAEConfig field, where the names differ; TrainConfig's fields are options of the same name.
MODEL_OPTIONS = {"latent": "latent_dim", "hidden": "hidden_dims", "arch": "arch",
                 "gaussian_std": "gaussian_std", "channels": "channels", "decoder_style": "decoder_style",
                 "activation": "activation", "prior": "prior", "prior_components": "prior_components"}
TRAIN_OPTIONS = tuple(f.name for f in fields(TrainConfig))


def _default(cls, name: str):
    """The dataclass field's default: the option's default."""
    field = next(f for f in fields(cls) if f.name == name)
    return field.default if field.default is not MISSING else field.default_factory()


def _model(option: str):
    return _default(VAEConfig, MODEL_OPTIONS[option])


def _train(option: str):
    return _default(TrainConfig, option)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vae-edge")
@click.option("--data", "data_spec", default="digits", show_default=True, help=DATA_HELP)
@click.option("--val-data", "val_spec", default=None, metavar="SPEC", help="Validation data, any --data SPEC (then the split gives validation 0; by default its share goes to training).")
@click.option("--test-data", "test_spec", default=None, metavar="SPEC", help="Test data, any --data SPEC (then the split gives test 0; by default its share goes to training).")
@click.option("--split", "split_text", default=None, metavar="TRAIN,VAL,TEST", help="Fractions of --data for each part, summing to 1 [default: 0.8,0.1,0.1, less the parts given by --val-data/--test-data]; 0.9,0.1,0: no test split.")
@click.option("--size", default=None, metavar="HxW", help="Resize images:DIR images to this size (default: their common size).")
@click.option("--sample-rate", type=click.IntRange(min=1000, max=384000), default=16000, show_default=True, help="audio:DIR: files are resampled to this rate (Hz).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None, help="audio:DIR: seconds per clip, one clip per file, cropped or zero-padded (default: the files' common length).")
@click.option("--window", type=click.FloatRange(min=0, min_open=True), default=None, help="audio:DIR: windows of this many seconds over long recordings. "
              "csv:PATH, parquet:PATH or npy:PATH [T, C]: cut the series into windows [C, N] of this many steps (an integer; conv1d or mlp).")
@click.option("--stride", type=click.FloatRange(min=0, min_open=True), default=None, help="With --window: seconds (audio:DIR) or steps (a series) between window starts (default: --window, no overlap).")
@click.option("--mels", type=click.IntRange(min=1), default=64, show_default=True, help="audio:DIR: mel bands of the log-mel front end.")
@click.option("--n-fft", type=click.IntRange(min=16), default=1024, show_default=True, help="audio:DIR: FFT frame length (samples).")
@click.option("--hop", type=click.IntRange(min=1), default=512, show_default=True, help="audio:DIR: samples between frames.")
@click.option("--arch", type=click.Choice([*ARCHS, *TEXT_ARCHS]), default=_model("arch"), show_default=True, help="Encoder/decoder architecture: conv for images [C, H, W], conv1d for sequences [C, L] or [L], gru for text:FILE (the default there).")
@click.option("--latent", type=click.IntRange(min=1), default=_model("latent"), show_default=True, help="Latent dimensions.")
@click.option("--hidden", type=click.IntRange(min=0), multiple=True, default=_model("hidden"), show_default=True, help="MLP hidden layer width (repeat for more layers: --hidden 512 --hidden 512; --hidden 0: none, a linear encoder and decoder).")
@click.option("--channels", type=click.IntRange(min=1), multiple=True, default=_model("channels"), show_default=True, help="conv/conv1d: width of each stride-2 layer (repeat; each halves the size).")
@click.option("--decoder-style", type=click.Choice(DECODER_STYLES), default=_model("decoder_style"), show_default=True, help="conv/conv1d decoder upsampling: sub-pixel (Conv + PixelShuffle; its int8-static variant is the fastest), ConvTranspose, or nearest Upsample + Conv.")
@click.option("--activation", type=click.Choice(ACTIVATIONS), default=_model("activation"), show_default=True, help="MLP: the nonlinearity after each hidden layer (conv/conv1d use relu).")
@click.option("--prior", type=click.Choice(("auto", *PRIORS)), default="auto", show_default=True, help="p(z): standard N(0, I), or vamp, the VampPrior (a mixture of q(z|u) at learned pseudo-inputs u; Tomczak & Welling, 2018); auto: vamp for an MLP on Bernoulli data with 1000 or more training samples (measured on the digits: docs/training.md), else standard.")
@click.option("--prior-components", type=click.IntRange(min=1), default=DEFAULT_PRIOR_COMPONENTS, show_default=True, help="--prior vamp: the number of pseudo-inputs (mixture components).")
@click.option("--epochs", type=click.IntRange(min=1), default=_train("epochs"), show_default=True, help="Most epochs in all (with --resume: including those already trained); early stopping (--patience) may end sooner.")
@click.option("--batch-size", type=click.IntRange(min=1), default=_train("batch_size"), show_default=True, help="Samples per step (per process under torchrun).")
@click.option("--lr", type=click.FloatRange(min=0, max=10, min_open=True), default=_train("lr"), show_default=True, help="Adam learning rate (the start of the --lr-schedule).")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=_train("weight_decay"), show_default=True, help="Decoupled weight decay (AdamW: each step shrinks every weight by lr x this); 0: plain Adam.")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=_train("lr_schedule"), show_default=True, help="cosine: from --lr down to 1% of it over --epochs; constant: --lr throughout.")
@click.option("--objective", type=click.Choice(OBJECTIVES), default=_train("objective"), show_default=True, help="Train on the importance-weighted bound with --iw-train samples, or on the ELBO (where --beta and --kl-warmup apply).")
@click.option("--iw-train", type=click.IntRange(min=1), default=_train("iw_train"), show_default=True, help="--objective iwae: samples K of the training bound.")
@click.option("--iw-val", type=click.IntRange(min=1), default=_train("iw_val"), show_default=True, help="--objective iwae: samples K of the validation bound early stopping watches (at least --iw-train; a tight bound, since the K of training falls late in a run while the likelihood still rises).")
@click.option("--iw-gradient", type=click.Choice(IW_GRADIENTS), default=_train("iw_gradient"), show_default=True, help="--objective iwae: the encoder's gradient estimator: the bound's own, or dreg, the doubly reparameterised one (Tucker et al., 2019), whose noise does not grow with K.")
@click.option("--beta", type=click.FloatRange(min=0), default=_train("beta"), show_default=True, help="KL weight (1 = the ELBO; --objective elbo).")
@click.option("--kl-warmup", type=click.FloatRange(min=0), default=_train("kl_warmup"), show_default=True, help="Epochs over which the KL weight ramps up from 0 (--objective elbo).")
@click.option("--likelihood", type=click.Choice(("auto", *LIKELIHOODS)), default="auto", show_default=True, help="p(x|z): bernoulli (data scaled to [0, 1]) or gaussian (data standardised per feature); auto: bernoulli for data in a fixed range (8-bit images, IDX, values in [0, 1], whole-number grey levels 0..255), else gaussian.")
@click.option("--columns", default=None, metavar="A,B,...", help="csv:PATH, parquet:PATH: the columns to read, by name (default: all).")
@click.option("--gaussian-std", type=click.FloatRange(min=0, min_open=True), default=_model("gaussian_std"), help="gaussian: fixed std of p(x|z) in standardised units (omitted: learned per feature).")
@click.option("--patience", type=click.IntRange(min=0), default=_train("patience"), show_default=True, help="Stop after N epochs without a better validation bound and keep the best epoch (0: never; train all --epochs, keep the last; text:FILE: 3 unless given).")
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=_train("ema"), show_default=True, metavar="DECAY", help="Keep an exponential moving average of the weights with this decay per step (e.g. 0.999): validated, kept and served instead of the raw weights (0: none).")
@click.option("--iw-samples", type=click.IntRange(min=1), default=_train("iw_samples"), show_default=True, help="K for the importance-weighted NLL estimate on the test split.")
@click.option("--max-len", type=click.IntRange(min=1), default=None, help="text: longest line in characters (default 128); the runtime refuses longer lines.")
@click.option("--long-lines", type=click.Choice(["refuse", "cut", "skip"]), default="refuse", show_default=True, help="text: what to do with a line over --max-len (counted and reported).")
@click.option("--embed", type=click.IntRange(min=1), default=64, show_default=True, help="text: character embedding width.")
@click.option("--token-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True, help="text: share of decoder input characters replaced by <unk> (Bowman et al.).")
@click.option("--token-dropout-epochs", type=click.FloatRange(min=0), default=None, help="text: token dropout in the first N epochs only (0: in all; default: see docs/text.md).")
@click.option("--free-bits", type=click.FloatRange(min=0), default=0.15, show_default=True, help="text: KL floor per latent dimension, nats (free bits).")
@click.option("--min-epoch-steps", type=click.IntRange(min=1), default=100, show_default=True, help="text: an epoch is at least N steps; a smaller train split is gone over several times per epoch.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=_train("seed"), show_default=True, help="Seed of the weights' initialisation, the shuffle and the noise: on the CPU, the same seed and data train the same model (up to 2^63-1, torch's limit).")
@click.option("--device", type=click.Choice(DEVICES), default=_train("device"), show_default=True, help="Where to train: auto takes CUDA when present, else the CPU; cuda without a GPU is refused.")
@click.option("--resume", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Continue the run saved in this model.pt (its settings are the defaults; --out defaults to it).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("model.pt"), show_default=True, help="Checkpoint to write after every epoch; grids, metrics.json and loss curve go beside it.")
@click.option("--tensorboard", type=click.Path(file_okay=False, path_type=Path), default=None, help="Also log each epoch's bounds and learning rate as TensorBoard events in this folder.")
@click.option("--quiet", "-q", is_flag=True, default=_train("quiet"), help="No progress report (bars on a terminal, a line every few epochs elsewhere).")
@click.pass_context
def cli(ctx, **options):
    """Train a VAE and write MODEL.pt, plus PNG grids of test reconstructions and samples, a loss curve
    and a metrics file beside it. Distributed: torchrun --nproc_per_node=N -m vae_edge.trainer ...

    Under 1000 training samples (--arch mlp), the options left out take the small-data settings instead
    of the defaults shown: --hidden 0 --latent 4 --objective elbo --lr 0.01 --batch-size 32 --epochs 300
    --patience 0 --ema 0 (printed, and recorded in model.pt)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    require_workstation_extras("vae-train")
    from .distributed import is_main_process

    o = options
    given = {name for name in o if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)}
    ckpt = _apply_resume(o, given)
    text = _check_text(o, given)
    split = _plan_split(o)
    out, beside_file = _check_outputs(o)
    if text:
        from .textcli import train_text_command

        return train_text_command(o, given, out, beside_file, ckpt)
    audio = _audio_options(o, given, ckpt)  # first: it sets audio's default --arch and --likelihood
    size = _check_options(o, given)
    data = _load_data(o, size, split, audio)
    data = _apply_size_rule(o, given, data, ckpt)
    prior_reason = _resolve_prior(o, given, data)
    model_config, config = _build_configs(o, data)
    result = _run(model_config, data, config, out, beside_file, ckpt, o["tensorboard"])
    if not is_main_process():
        return
    written = [out, *_write_side_outputs(result, data, config, out)] if beside_file else [out]
    if o["tensorboard"] is not None:
        written.append(o["tensorboard"])  # the events folder, written by the loop
    _report(data, model_config, config, result.metrics, written, prior_reason)


def _resolve_prior(o: dict, given: set[str], data) -> str:
    """--prior auto as standard or vamp for these data (``config.auto_prior``), and --prior-components
    as VAEConfig's (0 for the standard prior). Returns why, for the report."""
    if o["prior"] == "auto":
        o["prior"], reason = auto_prior(o["arch"], data.likelihood, len(data.train))
    else:
        reason = "as given" if "prior" in given else "that of the checkpoint (--resume)"
    if o["prior"] != "vamp":
        if "prior_components" in given:
            raise click.BadParameter(f"applies to --prior vamp only (the prior is {o['prior']}: {reason})", param_hint="--prior-components")
        o["prior_components"] = 0
    elif o["prior_components"] > len(data.train):
        raise click.BadParameter(f"{o['prior_components']} pseudo-inputs, but the training split has {len(data.train)} samples to start them on; "
                                 f"give at most {len(data.train)}", param_hint="--prior-components")
    return reason


TEXT_OPTIONS = ("max_len", "long_lines", "embed", "token_dropout", "token_dropout_epochs", "free_bits", "min_epoch_steps")


def _check_text(o: dict, given: set[str]) -> bool:
    """Whether this run trains the sentence VAE (``--data text:FILE``, trainer/textcli.py); the text
    options are refused elsewhere, and --arch gru without text data."""
    text = o["data_spec"].startswith("text:")
    if o["arch"] in TEXT_ARCHS and not text:
        raise click.BadParameter("--arch gru trains on text: give --data text:FILE", param_hint="--arch")
    for name in (n for n in TEXT_OPTIONS if n in given and not text):
        raise click.BadParameter("applies to --data text:FILE only", param_hint=f"--{name.replace('_', '-')}")
    return text


def _apply_resume(o: dict, given: set[str]) -> dict | None:
    """With --resume: read the checkpoint; options left out take its values, so that
    `vae-train --resume model.pt` just continues. Returns the checkpoint dict (None without --resume).
    For a text checkpoint the recorded options join ``given``: the text command's own defaults apply
    only to options neither given nor recorded."""
    if o["resume"] is None:
        return None
    from vae_edge.models import CheckpointError, read_checkpoint

    from .data import recorded_specs
    from .resume import resume_settings
    from .textresume import text_resume_settings

    try:
        ckpt = read_checkpoint(o["resume"])
    except CheckpointError as exc:
        raise click.BadParameter(str(exc), param_hint="--resume") from None
    if (ckpt.get("data") or {}).get("kind") == "text":
        recorded = {k: v for k, v in text_resume_settings(ckpt, base=o["resume"].parent).items() if k not in given}
        o.update(recorded)
        given |= set(recorded)
        if "out" not in given:
            o["out"] = o["resume"]
        return ckpt
    o.update({k: v for k, v in resume_settings(ckpt).items() if k not in given})
    if o["arch"] in TEXT_ARCHS:
        raise click.BadParameter("the checkpoint's arch is a text model's, but it records no text data; train again", param_hint="--resume")
    # The recorded data where they are now (beside model.pt when both moved), unless given anew.
    specs = recorded_specs(ckpt["data"], base=o["resume"].parent)
    for key, part in (("data_spec", "train"), ("val_spec", "val"), ("test_spec", "test")):
        if key not in given and specs[part]:
            o[key] = specs[part]
    fractions = (ckpt["data"].get("split") or {}).get("fractions")
    if "split_text" not in given and fractions:
        o["split_text"] = ",".join(f"{f:g}" for f in fractions)
    if "out" not in given:
        o["out"] = o["resume"]
    recorded = ckpt["data"]
    if "columns" not in given and recorded.get("columns"):
        o["columns"] = ",".join(recorded["columns"])
    if "window" not in given and isinstance(recorded.get("window"), dict):
        o["window"], o["stride"] = recorded["window"]["length"], recorded["window"]["stride"]
    shape = ckpt["data"].get("shape") or []
    if "size" not in given and o["data_spec"].startswith("images:") and len(shape) == 3:
        o["size"] = f"{shape[1]}x{shape[2]}"
    return ckpt


def _plan_split(o: dict):
    """--split, --val-data and --test-data as a ``splits.SplitPlan`` (specs made absolute)."""
    from .splits import SplitError, absolute_spec, parse_fractions, plan

    try:
        return plan(
            parse_fractions(o["split_text"]) if o["split_text"] is not None else None,
            val_spec=absolute_spec(o["val_spec"]) if o["val_spec"] else None,
            test_spec=absolute_spec(o["test_spec"]) if o["test_spec"] else None,
        )
    except SplitError as exc:
        raise click.BadParameter(str(exc), param_hint="--split") from None


def _check_outputs(o: dict) -> tuple[Path, bool]:
    """Refuse, before any work, outputs that cannot be written or would overwrite or join the data.

    Returns:
        (model.pt path, whether the grids, metrics and curve go beside it: not beside a device such as /dev/null).
    """
    from .curves import output_paths
    from .data import DataError, data_files
    from .grids import grid_paths

    try:
        out = writable(o["out"], suffix=".pt")  # "--out run/" would otherwise write a checkpoint file named run
        beside_file = not (out.exists() and not out.is_file())
        written_paths = [out, *grid_paths(out), *output_paths(out)] if beside_file else []
        for side in written_paths[1:]:
            writable(side)
    except click.BadParameter as exc:
        exc.param_hint = "--out"  # writable() is called here, not as an option callback: name the option
        raise
    inputs = {}
    for spec, option in ((o["data_spec"], "--data"), (o["val_spec"], "--val-data"), (o["test_spec"], "--test-data")):
        try:
            inputs.update({os.path.realpath(p): (option, p) for p in data_files(spec)} if spec else {})
        except DataError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None
    for path in written_paths:
        if os.path.realpath(path) in inputs:
            option, data_path = inputs[os.path.realpath(path)]
            raise click.BadParameter(f"{path}: would overwrite the {option} file {data_path}", param_hint="--out")
    for spec, option in ((o["data_spec"], "--data"), (o["val_spec"], "--val-data"), (o["test_spec"], "--test-data")):
        if spec and spec.startswith("images:") and beside_file and out.resolve().is_relative_to(Path(spec[7:]).resolve()):
            raise click.BadParameter(f"is inside the images:DIR folder of {option}, whose PNG outputs would become data", param_hint="--out")
    return out, beside_file


def _check_options(o: dict, given: set[str]) -> tuple[int, int] | None:
    """Options that do not apply to the chosen architecture or data are refused rather than ignored.

    Returns:
        the parsed --size (None without it).
    """
    from .data import DataError
    from .readers import parse_size

    unused = {"mlp": ("channels", "decoder_style")}.get(o["arch"], ("hidden", "activation"))
    for name in (n for n in unused if n in given):
        raise click.BadParameter(f"does not apply to --arch {o['arch']}", param_hint=f"--{name.replace('_', '-')}")
    if 0 in o["hidden"]:
        if len(o["hidden"]) > 1:
            raise click.BadParameter("0 means no hidden layer and stands alone (--hidden 0)", param_hint="--hidden")
        o["hidden"] = ()
        if "activation" in given:
            raise click.BadParameter("applies after hidden layers, and --hidden 0 has none", param_hint="--activation")
    for name in ("iw_train", "iw_val", "iw_gradient"):
        if o["objective"] != "iwae" and name in given:
            raise click.BadParameter("applies to --objective iwae only", param_hint=f"--{name.replace('_', '-')}")
    if "iw_val" in given and o["iw_val"] < o["iw_train"]:
        raise click.BadParameter(f"{o['iw_val']} is below --iw-train {o['iw_train']}: the validation bound is at least as tight as the training one",
                                 param_hint="--iw-val")
    if o["size"] and not o["data_spec"].startswith("images:"):
        raise click.BadParameter("applies to --data images:DIR only", param_hint="--size")
    try:
        return parse_size(o["size"]) if o["size"] else None
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint="--size") from None


def _load_data(o: dict, size: tuple[int, int] | None, split, audio=None):
    from .data import DataError, load_data
    from .splits import absolute_spec

    columns = [c.strip() for c in o["columns"].split(",") if c.strip()] if o["columns"] else None
    window = None
    if audio is None:  # audio:DIR's --window/--stride are seconds, taken by AudioOptions
        if o["stride"] is not None and o["window"] is None:
            raise click.BadParameter("applies with --window only", param_hint="--stride")
        for name in ("window", "stride"):
            if o[name] is not None and float(o[name]) != int(o[name]):
                raise click.BadParameter(f"a series is cut in whole steps, got {o[name]:g}", param_hint=f"--{name}")
        window = (int(o["window"]), int(o["stride"] or o["window"])) if o["window"] else None
    try:
        return load_data(absolute_spec(o["data_spec"]), o["likelihood"], size=size, sequences=o["arch"] == "conv1d", split=split, audio=audio,
                         columns=columns, window=window)
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint=exc.option) from None


def _apply_size_rule(o: dict, given: set[str], data, ckpt: dict | None):
    """The settings left out follow the training split's size (``config.size_settings``); options given
    win, and --resume keeps the checkpoint's settings and recorded reason. Returns ``data`` with the reason."""
    from dataclasses import replace

    from .config import size_settings
    from .data import with_recorded_reasons

    if ckpt is not None:
        data = with_recorded_reasons(data, ckpt.get("data") or {})
        return data if data.settings_reason else replace(data, settings_reason="those of the checkpoint (--resume)")
    settings, reason = size_settings(len(data.train), o["arch"])
    if given & {"iw_train", "iw_val", "iw_gradient"}:  # --iw-train / --iw-val / --iw-gradient ask for the IWAE bound
        settings.pop("objective", None)
    chosen = {k: v for k, v in settings.items() if k not in given}
    o.update(chosen)
    if chosen:
        shown = {k: (" ".join(map(str, v)) or "0") if isinstance(v, tuple) else v for k, v in chosen.items()}  # () is --hidden 0
        reason += ": " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in shown.items())
    if kept := [k for k in settings if k not in chosen]:
        reason += "; " + ", ".join(f"--{k.replace('_', '-')}" for k in kept) + " as given"
    return replace(data, settings_reason=reason)


def _build_configs(o: dict, data) -> tuple[VAEConfig, TrainConfig]:
    try:
        model_config = VAEConfig(input_shape=data.shape, likelihood=data.likelihood, **{field: o[option] for option, field in MODEL_OPTIONS.items()})
        return model_config, TrainConfig(**{k: o[k] for k in TRAIN_OPTIONS})
    except ValueError as exc:  # e.g. a conv stack the data's size cannot take, or --beta with --objective iwae
        raise click.UsageError(str(exc)) from None


def _run(model_config: VAEConfig, data, config: TrainConfig, out: Path, beside_file: bool, ckpt: dict | None, tensorboard: Path | None):
    from .loop import train

    try:
        return train(model_config, data, config, out=out, side_outputs=beside_file, resume=ckpt, tensorboard=tensorboard)
    except ValueError as exc:  # bad settings, or a checkpoint that these settings cannot continue
        raise click.UsageError(str(exc)) from None
    except RuntimeError as exc:  # TrainingError, or torch failing (e.g. out of memory, overflow)
        raise click.ClickException((str(exc).strip().splitlines() or [type(exc).__name__])[0]) from None


def _write_side_outputs(result, data, config: TrainConfig, out: Path) -> list[Path]:
    """The metrics file and loss curve (written by the loop), plus the image grids for 1- or 3-channel images."""
    from .curves import output_paths
    from .grids import grid_paths, reconstruction_grid, sample_grid

    written = list(output_paths(out))
    if data.kind == "image" and data.shape[0] in (1, 3):
        recon_path, samples_path = grid_paths(out)
        written += [
            reconstruction_grid(result.model, data.to_model(data.test if len(data.test) else data.val), recon_path, display=data.to_display),
            sample_grid(result.model, samples_path, seed=config.seed, display=data.to_display),
        ]
    return written


def _report(data, mc: VAEConfig, config: TrainConfig, m: dict, written: list[Path], prior_reason: str) -> None:
    objective = f"IWAE bound K={config.iw_train}, {config.iw_gradient} gradient (validation bound K={config.val_samples})" if config.objective == "iwae" else "ELBO"
    widths = (f"hidden {list(mc.hidden_dims)} {mc.activation}" if mc.hidden_dims else "no hidden layer (linear)") if mc.arch == "mlp" else f"channels {list(mc.channels)} ({mc.decoder_style} decoder)"
    noise = "" if mc.likelihood != "gaussian" else f" (std {mc.gaussian_std:g})" if mc.gaussian_std else " (learned variance)"
    stopped = f", stopped early, kept epoch {m['best_epoch']}" if m["stopped_early"] else ""
    click.echo(f"data      {data.name}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test, shape {list(data.shape)}")
    if data.window:
        click.echo(f"windows   {data.window['length']} steps every {data.window['stride']} of channels {', '.join(data.window['channels'])}, split in time order")
    click.echo(f"model     {mc.arch} {list(data.shape)}, {widths}, latent {mc.latent_dim}, {mc.likelihood}{noise}")
    click.echo(f"likelihood {mc.likelihood}: {data.likelihood_reason}")
    click.echo(f"prior     {f'vamp, {mc.prior_components} pseudo-inputs' if mc.prior == 'vamp' else 'N(0, I)'}: {prior_reason}")
    click.echo(f"settings  {data.settings_reason}")
    click.echo(f"train     {objective}; ELBO {m['train_elbo']:.2f} nats/sample after {m['epochs']} epoch{'' if m['epochs'] == 1 else 's'}{stopped} ({m['epoch_seconds'] * 1000:.0f} ms/epoch on {m['device']} x{m['world_size']})")
    if m["test_samples"]:
        click.echo(f"test      ELBO {m['test_elbo']:.2f} nats/sample (recon {m['test_recon_nll']:.2f} + KL {m['test_kl']:.2f}), IWAE NLL {m['test_iwae_nll']:.2f} (K={m['iw_samples']})")
    else:
        click.echo(f"test      none: the split gives test 0 and there is no --test-data, so no test metrics (validation ELBO {m['val_elbo']:.2f} nats/sample)")
    for path in written:
        click.echo(f"wrote     {path}")


AUDIO_LR = 1e-3  # audio's default --lr, as docs/audio.md's figures were measured
AUDIO_OPTIONS = ("sample_rate", "duration", "window", "stride", "mels", "n_fft", "hop")


# vae-train option -> AudioOptions field, where --resume takes the recorded value of an option left out.
_AUDIO_FIELDS = {"sample_rate": "sample_rate", "duration": "duration", "window": "window", "stride": "stride", "n_fft": "n_fft", "hop": "hop", "mels": "n_mels"}


def _audio_options(o: dict, given: set[str], ckpt: dict | None = None):
    """audio:DIR's settings (None for other data); its defaults are conv, a Gaussian likelihood and lr 1e-3, and
    with --resume the checkpoint's, for every option left out."""
    if not o["data_spec"].startswith("audio:"):
        for name in (n for n in AUDIO_OPTIONS if n in given and n not in ("window", "stride")):  # those also cut series
            raise click.BadParameter("applies to --data audio:DIR only", param_hint=f"--{name.replace('_', '-')}")
        return None
    from .audio import AudioOptions
    from .data import DataError

    recorded = ((ckpt or {}).get("data", {}).get("audio") or {}).get("options")
    if isinstance(recorded, dict):  # --resume: arch and likelihood came back with the other settings
        o.update({opt: recorded[f] for opt, f in _AUDIO_FIELDS.items() if opt not in given and f in recorded})
    else:
        o["arch"] = o["arch"] if "arch" in given else "conv"
        o["likelihood"] = o["likelihood"] if "likelihood" in given else "gaussian"
        # The shared 6e-3 was measured on the digits MLP; the audio conv at it served epoch 1 of 40 on
        # make demo-audio's spoken digits (diverged) and a latent of KL 0.02 on the machine sound.
        o["lr"] = o["lr"] if "lr" in given else AUDIO_LR
    try:
        return AudioOptions(
            sample_rate=o["sample_rate"], duration=o["duration"], window=o["window"], stride=o["stride"], n_fft=o["n_fft"], hop=o["hop"],
            n_mels=o["mels"], frame_multiple=2 ** len(o["channels"]) if o["arch"] != "mlp" else 1, mel_image=o["arch"] != "conv1d",
        )
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None


def main() -> None:
    """Console-script entry point."""
    run_cli(cli, prog_name="vae-train")
