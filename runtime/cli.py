"""vae-run: the runtime from a shell. BUNDLE may be omitted everywhere: the default bundle is used.

Over 300 lines on purpose: one click group whose commands share options, input reading and error
handling defined once here; each command is thin (parse, call the VAE API, write) and reads alone.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import sys
from pathlib import Path

import click
import numpy as np

from . import contract, textcli
from .benchmark import BATCH_SIZES, MAX_BATCH, NOISY_SPREAD
from .bundle import BundleError, default_bundle_path, describe_latency, read_manifest
from .clitools import output_path, run_cli
from .rng import MAX_SEED
from .files import atomic_save_npy, atomic_write_bytes, read_array
from .streaming import MAX_STREAM_BATCH, RowError
from .validation import as_batch, json_text, one_line
from .vae import MAX_MC_SAMPLES, VAE
from . import audio_cli
from .audio_vae import AudioVAE

_PRECISION = click.option("--precision", default="fp32", show_default=True, help="Variant to run: fp32, int8, ..., or auto: the pair the exporter recommended per graph (see `vae-run info`).")
_FORMAT = click.option("--format", "fmt", type=click.Choice(["onnx", "ort"]), default="onnx", show_default=True, help="Graph files to run: .onnx, or the ORT-format files of a bundle exported with `vae-export --ort`.")


def _graphs(command):
    """--precision and --format: which of the bundle's graphs a command runs."""
    return _PRECISION(_FORMAT(command))


_THREADS = click.option("--threads", type=click.IntRange(min=1), default=None, help="onnxruntime intra-op threads (default: one per core).")
_OUT = click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), callback=output_path(".npy"), help="Write the result as .npy (default: print rows as comma-separated values).")
# Audio bundles: sound out, and the Griffin-Lim iterations that turn decoded log-mel into it.
_WAV_DIR = click.option("--wav", type=click.Path(file_okay=False, path_type=Path), default=None, help="Audio bundles: write each sample as a 16-bit WAV into this folder.")
_WAV_FILE = click.option("--wav", type=click.Path(dir_okay=False, path_type=Path), callback=output_path(".wav"), default=None, help="Audio bundles: write the reconstruction as a 16-bit WAV.")
_ITERATIONS = click.option("--iterations", type=click.IntRange(1, 1000), default=32, show_default=True, help="Audio bundles: Griffin-Lim iterations (log-mel back to sound).")
_GRID = click.option("--grid", type=click.Path(dir_okay=False, path_type=Path), callback=output_path(".png"), help="Also write a PNG image grid (image data only).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vae-edge")
def cli():
    """Run an exported VAE bundle with numpy + onnxruntime (no torch).

    Inputs and outputs are .npy arrays in the data's own units; [BUNDLE] defaults to the bundle shipped
    with the package (an MLP trained on scikit-learn's 8x8 digits, values 0..16).
    """


def _handle_errors(fn):
    """Map library errors onto click's exit codes: bad input 2, a failed job 1 (OSError: see run_cli)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (BundleError, ValueError) as exc:
            raise click.UsageError(str(exc)) from None
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def _split(paths: tuple[Path, ...], wanted: str | None) -> tuple[Path | None, Path | None]:
    """[BUNDLE] [INPUT]: the bundle is optional and comes first."""
    n_max = 2 if wanted else 1
    if len(paths) > n_max or (wanted and not paths):
        usage = f"[BUNDLE] {wanted}" if wanted else "[BUNDLE]"
        raise click.UsageError(f"expected {usage}, got {len(paths)} path(s)")
    if wanted:
        return (paths[0] if len(paths) == 2 else None), paths[-1]
    return (paths[0] if paths else None), None


def _load(bundle: Path | None, precision: str, fmt: str, threads: int | None, *, inputs=(), outputs=()) -> VAE:
    if audio_cli.is_audio_bundle(bundle):
        if fmt != "onnx":
            raise ValueError("audio bundles have .onnx graphs only (--format onnx)")
        vae = AudioVAE.load(bundle, precision=precision, threads=threads)
        _check_outputs(vae, inputs, outputs)
        return vae
    vae = VAE.load(bundle, precision=precision, threads=threads, format=fmt)
    _check_outputs(vae, inputs, outputs)
    return vae


def _check_outputs(vae: VAE, inputs, outputs) -> None:
    """Refuse an output that would overwrite the input, another output, or a file of the bundle."""

    def real(p) -> Path:
        return Path(os.path.realpath(p))

    bundle = real(vae.path)
    seen = {real(p): str(p) for p in inputs if p is not None}
    for out in (o for o in outputs if o is not None):
        r = real(out)
        if r.exists() and not r.is_file():
            continue  # /dev/null and the like
        if bundle in r.parents:
            raise ValueError(f"{out}: is inside the bundle folder {vae.path}; write outputs elsewhere")
        if r in seen:
            raise ValueError(f"{out}: would overwrite {seen[r]}, given in the same command")
        seen[r] = str(out)


def _read_batch(path: Path, sample_shape: tuple[int, ...]) -> np.ndarray:
    """Like _read_array, checked by _file_batch: a batch [n, *sample_shape], so outputs are always batched."""
    return _file_batch(_read_array(path), sample_shape, path)


def _file_batch(x: np.ndarray, sample_shape: tuple[int, ...], path: Path) -> np.ndarray:
    """``x`` read from ``path`` as a float32 batch (one sample gets a batch axis). Checked here rather than
    by the VAE so that a wrong dtype or shape, NaN or Inf is reported against the file, not its argument name.
    A file of no samples is refused too: the API returns an empty result, which a command would print as nothing."""
    if len(sample_shape) == 3 and sample_shape[0] == 1 and np.ndim(x) == 3 and tuple(np.shape(x)[1:]) == tuple(sample_shape[1:]):
        x = np.asarray(x)[:, None]  # [N, H, W] grey images, as vae-train's npy: reads them
    batch = as_batch(x, tuple(sample_shape), str(path))[0]
    if not len(batch):
        raise ValueError(f"{path}: holds no samples (shape {list(np.shape(x))}); expected at least one sample of shape {list(sample_shape)}")
    return batch


def _read_array(path: Path, *, mmap: bool = False) -> np.ndarray:
    """.npy, or .npz holding exactly one array (runtime.files.read_array); a folder is refused with the usage."""
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; expected [BUNDLE] then an input .npy/.npz file")
    return read_array(path, mmap=mmap)


def _emit(array: np.ndarray, out: Path | None) -> None:
    if out is not None:
        atomic_save_npy(out, array)
        click.echo(f"wrote {out} {list(array.shape)}", err=True)
        return
    a = np.asarray(array)
    rows = a.reshape(len(a), int(np.prod(a.shape[1:]))) if a.ndim else a.reshape(1, 1)
    np.savetxt(sys.stdout, rows, delimiter=",", fmt="%.6g")


def _results(vae: VAE, array: np.ndarray, out: Path | None, grid: Path | None, *, grid_images: np.ndarray | None = None, per_row: int | None = None, row_labels=None) -> None:
    """Write the PNG grid if asked, then the array to --out, or print it when neither was asked for."""
    if grid is not None:
        _grid(vae, grid, array if grid_images is None else grid_images, per_row=per_row, row_labels=row_labels)
    if out is not None or grid is None:
        _emit(array, out)


def _grid(vae: VAE, grid: Path, images: np.ndarray, *, per_row: int | None = None, row_labels=None) -> None:
    if vae.manifest["data"].get("kind") != "image":
        raise ValueError(f"--grid needs image data; this bundle's samples have shape {list(vae.shape)}")
    if not len(images):
        raise ValueError("--grid: there are no images to draw (empty result)")
    from .images import save_grid

    if vae.likelihood == "bernoulli":
        shown = vae.normalize(images)  # the model's [0, 1]
    else:  # standardised values are unbounded: show the images' own range in data units as [0, 1]
        # nan-aware: the blank tiles of a short last row are NaN
        shown = (images - np.nanmin(images)) / max(float(np.nanmax(images) - np.nanmin(images)), 1e-12)
    save_grid(grid, shown, nrow=per_row, row_labels=row_labels)
    click.echo(f"wrote {grid}", err=True)


def _affine(value) -> str:
    # A number, or a per-feature list (checked on load): shown by its range.
    if isinstance(value, list):
        flat = np.asarray(value, dtype=np.float64)
        return f"per-feature[{flat.min():g}..{flat.max():g}]"
    return f"{value:g}"


@cli.command()
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print manifest.json as it is.")
@_handle_errors
def info(bundle, as_json):
    """Describe a bundle: shapes, variants with their sizes and accuracy, anomaly calibration."""
    # Every line holds manifest strings: each is printed through one_line, so no escape sequence or
    # line break in a manifest reaches the terminal raw.
    manifest = read_manifest(bundle if bundle is not None else default_bundle_path())
    if manifest["data"].get("kind") == "text":
        return textcli.info(textcli.load(bundle, next(iter(manifest["variants"])), 1), as_json)
    vae = _load(bundle, next(iter(manifest["variants"])), "onnx", 1)  # loading checks every file and graph; any variant will do
    m = vae.manifest
    if as_json:
        click.echo(json_text(json.dumps(m, indent=2, ensure_ascii=False)))
        return
    d, model = m["data"], m["model"]
    pre = d["preprocessing"]
    where = f"{vae.path}" + (" (default bundle)" if bundle is None else "")
    _echo(f"bundle     {where}")
    _echo(f"schema     {m['schema']}, opset {m.get('opset')}")
    noise = f" (std {_affine(model['likelihood_params']['std'])})" if model["likelihood"] == "gaussian" else ""
    _echo(f"model      {model.get('arch')}{_layers(model)}, latent {model['latent_dim']}, {model['likelihood']} likelihood{noise}, {_prior(model)}")
    _echo(f"data       {d.get('dataset')}: {d.get('kind')} samples {d['shape']}; graphs see (x - {_affine(pre['offset'])}) / {_affine(pre['scale'])}")
    for graph, spec in _section(m, "graphs").items():
        if not isinstance(spec, dict):
            continue
        sides = [", ".join(f"{k} {_shape(v)}" for k, v in _section(spec, side).items()) for side in ("inputs", "outputs")]
        _echo(f"graph      {graph}: {sides[0]} -> {sides[1]}")
    cal = _section(m, "anomaly")
    if cal:
        _echo(f"anomaly    {cal.get('score', 'negative ELBO per sample, nats')}; calibrated on {cal.get('calibration_split')} ({cal.get('calibration_samples')} samples)")
    for name, v in m["variants"].items():
        size = contract.variant_bytes(m, name)
        acc = _section(v, "accuracy")
        mark = "✓" if acc.get("passed") is True else "✗" if acc.get("passed") is False else "?"
        figures = ", ".join(f"{k} {_num(acc[k])}" for k in ("recon_nll", "recon_nll_rel_change", "score_max_rel_diff", "decoder_x_mean_max_abs") if k in acc)
        _echo(f"variant    {mark} {name:<11} {size:>9,} bytes  {figures}")
        _echo(f"             {v.get('method', '')}")
        ort_files = _section(v, "ort")
        if ort_files:
            ort_mark = {True: "✓", False: "✗"}.get(_section(ort_files, "accuracy").get("passed"), "?")
            names = ", ".join(str(ort_files.get(spec.name)) for spec in contract.variant_graphs(m, name, "ort"))
            _echo(f"             ORT format {ort_mark} {names} ({contract.variant_bytes(m, name, 'ort'):,} bytes)")
        for label, timed in ((".onnx", v), (".ort", ort_files)):
            if _section(timed, "latency_ms"):
                _echo(f"             time {label:<5} {describe_latency(timed)}")
        q = _section(v, "anomaly_quantiles")
        if q:
            _echo(f"             anomaly-score quantiles (validation): {'  '.join(f'{k} {_num(val)}' for k, val in q.items())}")
    quantization = _section(m, "quantization")
    for variant, why in _section(quantization, "left_out").items():
        _echo(f"left out   {variant}: {why.get('reason') if isinstance(why, dict) else why}")
    recommended = _section(quantization, "recommended")
    if recommended:
        chosen = _section(recommended, "chosen")
        _echo(f"recommended {', '.join(f'{g} {v}' for g, v in chosen.items())} (--precision auto): {recommended.get('rule', '')}")
        for graph, entry in _section(recommended, "graphs").items():
            if isinstance(entry, dict):
                order = f"in order {', '.join(map(str, entry['order'])) if isinstance(entry.get('order'), list) else '?'}"
                fastest = f"fastest at batch 1 {entry.get('fastest_batch_1', '?')}, at batch 64 {entry.get('fastest_batch_64', '?')}; " if "fastest_batch_1" in entry else ""
                _echo(f"             {graph}: {fastest}{order}")
    for line in _readiness_lines(_section(m, "readiness")):
        _echo(line)
    t = _section(m, "training")
    if t and t.get("test_elbo") is None and "val_elbo" in t:
        # Trained with a test fraction of 0 and no --test-data: there are no test figures to show.
        _echo(f"training   no test split: validation ELBO {_num(t.get('val_elbo'))}, {t.get('epochs')} epochs")
    elif t:
        _echo(f"training   test ELBO {_num(t.get('test_elbo'))}, IWAE NLL {_num(t.get('test_iwae_nll'))} (K={t.get('iw_samples')}), {t.get('epochs')} epochs")
    p = _section(m, "provenance")
    if p:
        versions = ", ".join(f"{k} {val}" for k, val in _section(p, "versions").items() if val)
        _echo(f"created    {p.get('created')} from {p.get('source')} ({versions})")


def _echo(line: str) -> None:
    click.echo(one_line(line))


def _readiness_lines(section: dict) -> list[str]:
    """`vae-run info`'s lines for the manifest's ``readiness`` section (export/readiness.py writes it);
    informative, so a hand-edited entry reads as absent."""
    out = []
    files = section.get("files") if isinstance(section.get("files"), dict) else {}
    for name, f in files.items():
        if not isinstance(f, dict):
            continue
        parts = [f"{f.get('bytes', '?'):,} bytes" if isinstance(f.get("bytes"), int) else "? bytes"]
        for provider in ("nnapi", "coreml"):
            p = f.get(provider) if isinstance(f.get(provider), dict) else {}
            shipped, fixed = (p.get(k) if isinstance(p.get(k), dict) else {} for k in ("as_shipped", "batch_fixed"))
            if fixed:
                parts.append(f"{provider} {fixed.get('supported_nodes')}/{fixed.get('nodes')} nodes in {fixed.get('partitions')} partition(s) "
                             f"with batch fixed: {fixed.get('verdict')} (as shipped: {shipped.get('verdict')})"
                             + (f", lacks {', '.join(map(str, fixed['unsupported_ops']))}" if isinstance(fixed.get("unsupported_ops"), list) and fixed["unsupported_ops"] else ""))
        memory = f.get("memory_batch_1")
        if isinstance(memory, dict):
            parts.append(f"batch-1 session +{memory.get('session_kib')} KiB resident (process peak {memory.get('process_peak_kib')} KiB)")
        latency = f.get("latency_us_batch_1")
        if isinstance(latency, dict):
            parts.append(f"batch 1 p50 {latency.get('p50')} us, p99 {latency.get('p99')} us")
        out.append(f"ready      {name}: " + "; ".join(parts))
    return out


def _section(parent: dict, key: str) -> dict:
    """An optional, informative manifest section; anything but an object reads as absent."""
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _layers(model: dict) -> str:
    """' 400-400 relu' (mlp) or ' channels 32-64, subpixel decoder' (conv), from the manifest's model
    config; '' where it does not say (a bundle of an older exporter)."""
    cfg = model.get("config")
    if not isinstance(cfg, dict):
        return ""

    def widths(key: str) -> str | None:
        return "-".join(map(str, cfg[key])) if isinstance(cfg.get(key), list) and cfg[key] else None

    if model.get("arch") == "mlp":
        return f" {widths('hidden_dims')} {cfg.get('activation', 'relu')}" if widths("hidden_dims") else " linear (no hidden layer)"
    if widths("channels"):
        return f" channels {widths('channels')}, {cfg.get('decoder_style', 'transpose')} decoder"
    return ""


def _prior(model: dict) -> str:
    """'prior N(0, I)' or 'prior vamp, C components' (model.prior, checked on load)."""
    prior = model.get("prior")
    return "prior N(0, I)" if prior is None else f"prior {prior['kind']}, {prior['components']} components"


def _shape(value: object) -> str:
    return f"[{', '.join(map(str, value))}]" if isinstance(value, list) else str(value)


def _num(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


@cli.command()
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option("-n", "--num", "n", type=click.IntRange(min=1), default=16, show_default=True, help="How many samples.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=None, help="Same seed, same samples (default: fresh randomness).")
@click.option("--temperature", type=click.FloatRange(min=0, max=1e6, min_open=True), default=1.0, show_default=True, help="Scale of the prior's standard deviation (text: of the character distribution).")
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="text: draw each character from the k most likely only.")
@click.option("--max-len", type=click.IntRange(min=1), default=None, help="text: stop lines at this many characters (default: the model's limit).")
@click.option("--greedy", is_flag=True, help="text: the most likely character at each step (no character sampling).")
@_graphs
@_THREADS
@_OUT
@_GRID
@_WAV_DIR
@_ITERATIONS
@click.option("--normalize", is_flag=True, help="Audio bundles: scale each --wav sample to a peak of -6 dBFS (decoded means average log power, so samples come out quiet).")
@_handle_errors
def sample(bundle, n, seed, temperature, top_k, max_len, greedy, precision, fmt, threads, out, grid, wav, iterations, normalize):
    """Draw samples from the prior and decode them (audio bundles: log-mel, --wav DIR for sound, --grid spectrograms;
    text bundles: one line each)."""
    if textcli.is_text_bundle(bundle):
        textcli.refuse(out=out, grid=grid, wav=wav, normalize=normalize)
        return textcli.sample(textcli.load(bundle, precision, threads, fmt), n, seed, 0.0 if greedy else temperature, top_k, max_len)
    textcli.text_only(top_k=top_k, max_len=max_len, greedy=greedy)
    vae = _load(bundle, precision, fmt, threads, outputs=(out, grid))
    if isinstance(vae, AudioVAE):
        return audio_cli.sample(vae, n, seed, temperature, out=out, wav=wav, grid=grid, iterations=iterations, normalize=normalize)
    _results(vae, vae.sample(n, seed=seed, temperature=temperature), out, grid)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), metavar="[BUNDLE] INPUT.npy")
@_graphs
@_THREADS
@_OUT
@click.option("--grid", type=click.Path(dir_okay=False, path_type=Path), callback=output_path(".png"), help="Also write a PNG: rows of inputs, each followed by their reconstructions.")
@_WAV_FILE
@_ITERATIONS
@_handle_errors
def reconstruct(paths, precision, fmt, threads, out, grid, wav, iterations):
    """Encode and decode INPUT (posterior mean): denoised reconstructions, same shape as INPUT (audio bundles: IN.wav,
    --wav OUT.wav; text bundles: a UTF-8 file, one line each, greedy decodes printed one a line)."""
    bundle, src = _split(paths, "INPUT.npy")
    if textcli.is_text_bundle(bundle):
        textcli.refuse(out=out, grid=grid, wav=wav)
        return textcli.reconstruct(textcli.load(bundle, precision, threads, fmt), src)
    vae = _load(bundle, precision, fmt, threads, inputs=(src,), outputs=(out, grid, wav))
    if isinstance(vae, AudioVAE):
        return audio_cli.reconstruct(vae, src, out=out, wav=wav, grid=grid, iterations=iterations)
    x = _read_batch(src, vae.shape)
    x_hat = vae.reconstruct(x)
    pairs = per_row = None
    if grid is not None and np.size(x):
        from .images import RECONSTRUCTION_LABELS, interleave_rows

        xb, rb = np.reshape(x, (-1, *vae.shape)), np.reshape(x_hat, (-1, *vae.shape))
        per_row = max(1, min(8, len(xb)))
        pairs = interleave_rows(xb, rb, per_row)
    _results(vae, x_hat, out, grid, grid_images=pairs, per_row=per_row, row_labels=RECONSTRUCTION_LABELS if pairs is not None else None)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), metavar="[BUNDLE] INPUT.npy")
@_graphs
@_THREADS
@_OUT
@click.option("--logvar", "logvar_out", type=click.Path(dir_okay=False, path_type=Path), callback=output_path(".npy"), help="Also write the posterior log-variances as .npy.")
@_handle_errors
def encode(paths, precision, fmt, threads, out, logvar_out):
    """Encode INPUT to posterior means (the compressed code); optionally their log-variances (text: a UTF-8
    file, one line each)."""
    bundle, src = _split(paths, "INPUT.npy")
    if textcli.is_text_bundle(bundle):
        vae = textcli.load(bundle, precision, threads, fmt)
        _check_outputs(vae, (src,), (out, logvar_out))
        return textcli.encode(vae, src, out, logvar_out)
    vae = _load(bundle, precision, fmt, threads, inputs=(src,), outputs=(out, logvar_out))
    x = audio_cli.read_clips(vae, [src])[0] if isinstance(vae, AudioVAE) else _read_batch(src, vae.shape)  # audio: IN.wav
    mu, logvar = vae.encode(x)
    if logvar_out is not None:
        _emit(logvar, logvar_out)
    _emit(mu, out)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), metavar="[BUNDLE] Z.npy")
@_graphs
@_THREADS
@_OUT
@_GRID
@_handle_errors
def decode(paths, precision, fmt, threads, out, grid):
    """Decode latent codes Z [n, latent] to the mean of p(x|z), in data units."""
    bundle, src = _split(paths, "Z.npy")
    if textcli.is_text_bundle(bundle):
        textcli.refuse(out=out, grid=grid)
        vae = textcli.load(bundle, precision, threads, fmt)
        return textcli.decode(vae, _read_batch(src, (vae.latent_dim,)))  # checked against the file, a file of no rows refused
    vae = _load(bundle, precision, fmt, threads, inputs=(src,), outputs=(out, grid))
    x = vae.decode(_read_batch(src, (vae.latent_dim,)))
    _results(vae, x, out, grid, grid_images=np.reshape(x, (-1, *vae.shape)))


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), metavar="[BUNDLE] INPUT.npy|INPUT.csv|-")
@_graphs
@_THREADS
@_OUT
@click.option("--samples", type=click.IntRange(1, MAX_MC_SAMPLES), default=None, help="Monte-Carlo draws per sample (default: deterministic, z at the posterior mean).")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Seed for --samples.")
@click.option("--stream", is_flag=True, help="Score row by row, printing one score per line as each batch is done: INPUT.npy rows, or "
              "comma-separated numbers per line of INPUT.csv or standard input (INPUT '-' or none). A bundle trained on windows "
              "takes one time step per row and prints one score per window as soon as it is complete.")
@click.option("--batch-size", type=click.IntRange(1, MAX_STREAM_BATCH), default=64, show_default=True, help="Rows per batch with --stream (1: answer each line at once).")
@click.option("--pcm", "pcm_format", type=click.Choice(["s16le", "f32le"]), default="s16le", show_default=True, help="Audio bundles, --stream: raw mono PCM on standard input (arecord -f S16_LE -r RATE -c 1).")
@click.option("--stride", type=click.FloatRange(min=0, min_open=True), default=None, help="Audio bundles: seconds between windows of long files and streams (default: the training stride, else one window).")
@click.option("--per-char", is_flag=True, help="text: nats per character (the line's end counts as one) instead of per line.")
@_handle_errors
def score(paths, precision, fmt, threads, out, samples, seed, stream, batch_size, pcm_format, stride, per_char):
    """Anomaly scores of INPUT (.npy/.npz, or .csv with the training data's columns): negative ELBO per sample
    in nats (higher = less like the training data); a windowed bundle cuts a series [T, C] as in training.
    Audio bundles: BUNDLE A.wav [B.wav ...], one score per clip (per window for long files), or BUNDLE - --stream.
    Text bundles: BUNDLE FILE, one score per line; BUNDLE [FILE|-] --stream scores lines as they arrive (a log)."""
    if textcli.is_text_bundle(textcli.bundle_of(paths)):
        textcli.refuse(samples=samples, stride=stride)
        return textcli.score_command(paths, precision, threads, out, stream, batch_size, per_char, check_outputs=_check_outputs, fmt=fmt)
    textcli.text_only(per_char=per_char)
    if paths and audio_cli.is_audio_bundle(paths[0]):
        return _score_audio(paths, precision, threads, out, samples, stream, pcm_format, stride)
    if stream:
        _score_stream(paths, precision, fmt, threads, out, samples, batch_size)
        return
    bundle, src = _split(paths, "INPUT.npy")
    if str(src) == "-":
        raise click.UsageError("INPUT '-' (standard input) is read with --stream only")
    vae = _load(bundle, precision, fmt, threads, inputs=(src,), outputs=(out,))
    scores = vae.anomaly_score(_read_samples(src, vae), samples=samples, seed=seed)  # .csv as in training too
    _emit(scores, out)
    _flag_summary(vae, scores)


def _score_audio(paths, precision, threads, out, samples, stream, pcm_format, stride) -> None:
    if samples is not None:
        raise click.UsageError("audio scores are deterministic here; --samples is for the Python API")
    sources = list(paths[1:])
    vae = _load(paths[0], precision, "onnx", threads, inputs=sources, outputs=(out,))
    if stream:
        if out is not None:
            raise click.UsageError("--stream prints one score per window; use it without --out (or redirect the output)")
        if len(sources) > 1:
            raise click.UsageError(f"--stream reads one source ('-' for standard input or a raw PCM file), got {len(sources)}")
        src = sources[0] if sources and str(sources[0]) != "-" else None
        return audio_cli.score_stream(vae, src, fmt=pcm_format, stride=stride, quantile=0.99)
    if not sources or any(str(s) == "-" for s in sources):
        raise click.UsageError("expected BUNDLE A.wav [B.wav ...] (standard input '-' with --stream)")
    audio_cli.score(vae, sources, out=out, stride=stride, quantile=0.99)


def _score_stream(paths, precision, fmt, threads, out, samples, batch_size) -> None:
    """score --stream: .npy rows (memory-mapped) or stdin lines in, one score per line out, flushed per batch."""
    if samples is not None:
        raise click.UsageError("--stream scores deterministically; --samples is for whole files")
    if out is not None:
        raise click.UsageError("--stream prints one score per line; use it without --out (or redirect the output)")
    if len(paths) == 1 and paths[0].is_dir():  # `sensor | vae-run score BUNDLE --stream`: INPUT left out, standard input
        bundle, src = paths[0], None
    else:
        bundle, src = _split(paths, "INPUT.npy|INPUT.csv|-") if paths else (None, None)
    if src is not None and str(src) == "-":
        src = None  # standard input
    vae = _load(bundle, precision, fmt, threads, inputs=(src,))
    if getattr(vae, "window", None):
        _score_window_stream(vae, src)
        return
    header: list = []
    if src is None or _is_csv(src):
        rows = _text_rows(src, vae.shape, vae.manifest["data"].get("columns"), header)
    else:
        rows = _read_array(src, mmap=True)
        if rows.ndim <= 1 or rows.shape == vae.shape:  # one sample (flat or shaped): one row
            rows = rows.reshape(1, *rows.shape)
    flagged = total = 0
    limit = _threshold_or_none(vae)
    try:
        for scores in vae.score_batches(rows, batch_size):
            click.echo("\n".join(f"{s:.6g}" for s in scores.tolist()))
            sys.stdout.flush()  # a pipe sees each batch's scores now, not when the stream ends
            total += len(scores)
            flagged += int((scores > limit).sum()) if limit is not None else 0
    except RowError as exc:
        raise ValueError(f"{_row_place(src, exc.row, header)}: {exc.reason}") from None
    if not total:  # as for text and windowed streams: silence and exit 0 would read as "nothing unusual"
        raise ValueError(f"{src or 'standard input'}: is empty; expected rows of {int(np.prod(vae.shape))} comma-separated numbers")
    _report_flagged(flagged, total, limit)


def _score_window_stream(vae: VAE, src: Path | None) -> None:
    """A windowed bundle: rows are time steps (stdin lines, or a .npy [T, C]); one score per window, printed as it completes."""
    header: list = []
    if src is None or _is_csv(src):
        rows = _text_rows(src, (int(vae.shape[0]),), vae.window.get("channels"), header)
    else:
        rows = _read_array(src, mmap=True)
    flagged = total = 0
    limit = _threshold_or_none(vae)
    seen = [0]

    def counted(steps):
        for step in steps:
            seen[0] += 1
            yield step

    try:
        for _, s in vae.score_windows(counted(rows)):
            click.echo(f"{s:.6g}")
            sys.stdout.flush()
            total += 1
            flagged += int(limit is not None and s > limit)
    except RowError as exc:
        raise ValueError(f"{_row_place(src, exc.row, header)}: {exc.reason}") from None
    length = int(vae.window["length"])
    if not total and seen[0] < length:
        # Silence and exit 0 would read as "nothing unusual"; the series was too short to say anything.
        raise ValueError(f"{src or 'standard input'}: the series ended after {seen[0]} rows, shorter than one window ({length} steps); no window was scored")
    _report_flagged(flagged, total, limit)


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def _row_place(src: Path | None, row: int, header: list) -> str:
    """Where a bad row of a stream is: a line of standard input or of a .csv (counting the header), else an .npy row."""
    if src is None:
        return f"line {row + 1 + len(header)}"
    return f"{src}: line {row + 1 + len(header)}" if _is_csv(src) else f"{src}: row {row}"


def _text_rows(src: Path | None, shape: tuple[int, ...], columns: list[str] | None, header: list):
    """Rows of standard input (``src`` None) or of a .csv file read the same way, line by line, so that
    ``score B readings.csv --stream`` is ``score B - --stream < readings.csv``."""
    if src is None:
        return _stdin_rows(shape, columns, header)
    if not src.is_file():
        raise ValueError(f"{src}: no such file" if not src.exists() else f"{src}: is not a file; expected a .csv of rows")

    def rows():
        with open(src, encoding="utf-8", errors="replace", newline=None) as f:
            yield from _stdin_rows(shape, columns, header, f)
    return rows()


def _stdin_rows(shape: tuple[int, ...], columns: list[str] | None = None, header: list | None = None, stream=None):
    """Rows from standard input, one per line: comma-separated numbers (anything else ends the stream).
    A first line naming the bundle's ``columns`` (``cat readings.csv |``) is skipped and appended to
    ``header``, so that the caller can name the line of a row: row + 1 + len(header).

    A line is read up to a bound (32 characters per value of a row, plus slack), so a line without a
    newline cannot fill memory."""
    values = int(np.prod(shape))
    limit = 32 * values + 4096
    row = 0
    for number in itertools.count(1):
        line = (stream or sys.stdin).readline(limit + 1)
        if not line:
            return
        if len(line) > limit:
            raise RowError(row, f"line longer than {limit} characters; a row is {values} comma-separated numbers")
        if number == 1 and columns and [c.strip() for c in line.split(",")] == list(columns):
            if header is not None:
                header.append(line)
            continue
        try:
            yield np.array(line.split(","), dtype=np.float64)
        except ValueError:
            raise RowError(row, f"expected comma-separated numbers, got {line.strip()[:40]!r}") from None
        row += 1


def _threshold_or_none(vae: VAE) -> float | None:
    try:
        return vae.threshold(0.99)
    except ValueError:
        return None  # no calibration for this variant: nothing to compare with


def _flag_summary(vae: VAE, scores: np.ndarray) -> None:
    limit = _threshold_or_none(vae)
    _report_flagged(int((scores > limit).sum()) if limit is not None else 0, len(scores), limit)


def _report_flagged(flagged: int, total: int, limit: float | None) -> None:
    if limit is not None and total:
        click.echo(f"{flagged} of {total} above the validation p99 ({limit:.2f} nats)", err=True)


@cli.command()
@click.argument("args", nargs=-1, metavar="[BUNDLE] PAIR.npy | [BUNDLE] A.npy B.npy | BUNDLE 'TEXT A' 'TEXT B'")
@click.option("--steps", type=click.IntRange(min=2, max=10_000), default=8, show_default=True, help="Points on the path, both ends included.")
@_graphs
@_THREADS
@_OUT
@_GRID
@_handle_errors
def interpolate(args, steps, precision, fmt, threads, out, grid):
    """Decode a straight path in latent space between two samples: PAIR.npy holding two, or one each in A.npy and B.npy
    (text bundle: between two lines given as arguments, greedy decodes printed one a line)."""
    if len(args) == 3 and textcli.is_text_bundle(Path(args[0])):  # the two ends are lines of text, not files
        textcli.refuse(out=out, grid=grid)
        return textcli.interpolate(textcli.load(Path(args[0]), precision, threads, fmt), args[1], args[2], steps)
    bundle, sources = _split_interpolate(tuple(Path(a) for a in args))
    if textcli.is_text_bundle(bundle):
        raise click.UsageError("a text bundle interpolates between two lines: BUNDLE 'TEXT A' 'TEXT B'")
    vae = _load(bundle, precision, fmt, threads, inputs=sources, outputs=(out, grid))
    ends = [x for src in sources for x in _read_batch(src, vae.shape)]
    if len(ends) != 2:
        got = " + ".join(str(len(_read_batch(src, vae.shape))) for src in sources)
        raise ValueError(f"expected two samples of shape {list(vae.shape)} (one file holding two, or two files holding one each), got {got}")
    path = vae.interpolate(ends[0], ends[1], steps=steps)
    _results(vae, path, out, grid, per_row=steps)


def _split_interpolate(paths: tuple[Path, ...]) -> tuple[Path | None, tuple[Path, ...]]:
    """[BUNDLE] PAIR.npy or [BUNDLE] A.npy B.npy: with two paths, a folder first is the bundle."""
    if len(paths) == 3:
        return paths[0], paths[1:]
    if len(paths) == 2:
        return (paths[0], paths[1:]) if paths[0].is_dir() else (None, paths)
    if len(paths) == 1:
        return None, paths
    raise click.UsageError(f"expected [BUNDLE] PAIR.npy or [BUNDLE] A.npy B.npy, got {len(paths)} path(s)")


@cli.command()
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option("--precision", "variants", multiple=True, help="Variant to time; repeat for several (default: every variant in the bundle).")
@click.option("--batch", "batches", type=click.IntRange(1, MAX_BATCH), multiple=True, default=BATCH_SIZES, show_default=True, help="Batch size; repeat for several.")
@_THREADS
@click.option("--quick", is_flag=True, help="Fewer, shorter rounds (a few seconds in all; noisier).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), callback=output_path(".json"), help="Also write every figure, with machine and load, as JSON.")
@_handle_errors
def bench(bundle, variants, batches, threads, quick, json_out):
    """Latency and throughput of encode and decode per variant and batch size, on this device."""
    from .benchmark import FULL, QUICK, bench_bundle, format_seconds

    if textcli.is_text_bundle(bundle):
        raise click.UsageError("bench times encode and decode of image/vector bundles; for text, bench/text.py measures generation")
    if json_out is not None:  # refused before minutes of timing, not after
        _check_outputs(VAE.load(bundle, precision=variants[0] if variants else "fp32", threads=1), (), (json_out,))
    result = bench_bundle(bundle, variants=variants or None, batch_sizes=batches, threads=threads, effort=QUICK if quick else FULL)
    m = result["machine"]
    _echo(f"{result['bundle']}  ({m['cpu']}, {m['cores']} cores, onnxruntime {m['onnxruntime']}, threads {threads or 'default'}, load {m['load_average_1_5_15min'][0]:.2f})")
    _echo(f"{'variant':<12} {'op':<7} {'batch':>6} {'median':>10} {'p99':>10} {'samples/s':>12}  bytes")
    for row in result["rows"]:
        mark = "  ~noisy" if row["noisy"] else ""
        _echo(f"{row['variant']:<12} {row['op']:<7} {row['batch']:>6} {format_seconds(row['median_s']):>10} {format_seconds(row['p99_s']):>10} {row['per_second']:>12,.0f}  {result['bytes'][row['variant']]:,}{mark}")
    for o in result["overhead"]:
        mark = "  ~noisy" if o["noisy"] else ""
        _echo(f"overhead {o['variant']}: decode batch {o['batch']} {format_seconds(o['runtime_s'])} vs bare InferenceSession.run {format_seconds(o['bare_s'])} = {o['ratio']:.2f}x{mark}")
    if any(r["noisy"] for r in result["rows"]):
        click.echo(f"~noisy: round medians differ by more than {NOISY_SPREAD:.0%}; the machine is busy, measure again", err=True)
    if json_out is not None:
        atomic_write_bytes(json_out, (json.dumps(result, indent=2) + "\n").encode())
        click.echo(f"wrote {json_out}", err=True)


PARQUET_SUFFIXES = (".parquet", ".pq")  # what vae-train's parquet:PATH reads (pyarrow, a workstation extra)


def _read_samples(path: Path, vae: VAE) -> np.ndarray:
    """Samples to score or evaluate: .npy/.npz, or .csv (a header row, then numbers; the columns the
    bundle records, picked by name); a bundle trained on windows takes a series [T, C] and cuts it as in
    training (or windows [n, C, N] as they are)."""
    from .tables import read_csv, windows

    if path.suffix.lower() in PARQUET_SUFFIXES:
        raise ValueError(f"{path}: a Parquet table; vae-run reads samples from .npy/.npz or .csv (a header row, then numbers): "
                         "the device never reads Parquet, convert it to CSV on the workstation")
    if path.suffix.lower() == ".csv":
        columns = vae.manifest["data"].get("columns")
        x = read_csv(path, columns, saturate=True)[0]
    else:
        x = _read_array(path)
    if vae.window and x.ndim == 2 and x.shape[1] == vae.shape[0]:
        x = windows(x, int(vae.window["length"]), int(vae.window["stride"]), str(path))
    elif x.ndim >= 1 and x.shape != vae.shape and x.ndim == 2 and x.shape[1] == int(np.prod(vae.shape)):
        x = x.reshape(len(x), *vae.shape)  # flat rows of a table
    return _file_batch(x, vae.shape, path)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), metavar="[BUNDLE] NORMAL ANOMALOUS | [BUNDLE] DATA --labels LABELS")
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None, help="With one DATA file: 0 (normal) or 1 (anomalous) per sample, as .npy or a one-column .csv.")
@click.option("--false-alarm", "false_alarm", type=click.FloatRange(0, 1), default=None, help="Also pick the threshold that flags at most this fraction of the NORMAL data, and report it.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--roc", type=click.Path(dir_okay=False, path_type=Path), callback=output_path(".png"), help="Also write the ROC curve as a PNG.")
@_graphs
@_THREADS
@_handle_errors
def evaluate(paths, labels, false_alarm, as_json, roc, precision, fmt, threads):
    """How well the scores separate ANOMALOUS from NORMAL samples: ROC AUC, average precision, and
    precision / recall / false-alarm rate at each threshold stored in the bundle."""
    from . import evaluation

    if labels is None:
        if len(paths) not in (2, 3):
            raise click.UsageError(f"expected [BUNDLE] NORMAL ANOMALOUS (or one DATA file with --labels), got {len(paths)} path(s)")
        if len(paths) == 2 and Path(paths[0]).is_dir():  # else "BUNDLE: is a folder; expected ... .npy", which hides the cause
            raise click.UsageError(f"expected [BUNDLE] NORMAL ANOMALOUS, got the bundle {paths[0]} and one file; "
                                   "add the ANOMALOUS file (or give --labels)")
        bundle, files = (paths[0], paths[1:]) if len(paths) == 3 else (None, paths)
    else:
        if len(paths) not in (1, 2):
            raise click.UsageError(f"expected [BUNDLE] DATA with --labels, got {len(paths)} path(s)")
        bundle, files = (paths[0], paths[1:]) if len(paths) == 2 else (None, paths)
    kind = "text" if textcli.is_text_bundle(bundle) else "audio" if audio_cli.is_audio_bundle(bundle) else None
    if kind is not None:  # else an API message ("open it with vae_edge.runtime.load") or a WAV read as .npy
        raise click.UsageError(f"evaluate takes .npy/.npz/.csv samples of image and vector bundles; {bundle} is {'a text' if kind == 'text' else 'an audio'} bundle: "
                               f"score the normal and the anomalous {'lines' if kind == 'text' else 'WAVs'} with 'vae-run score ... --out FILE.npy'")
    vae = _load(bundle, precision, fmt, threads, inputs=(*files, labels), outputs=(roc,))
    if labels is None:
        normal_x, anomalous_x = (_read_samples(f, vae) for f in files)
    else:
        x = _read_samples(files[0], vae)
        y = _read_labels(labels)
        if len(y) != len(x):
            raise ValueError(f"{labels}: {len(y)} labels for {len(x)} samples in {files[0]}")
        normal_x, anomalous_x = x[y == 0], x[y == 1]
    normal, anomalous = vae.anomaly_score(normal_x), vae.anomaly_score(anomalous_x)
    auc = evaluation.roc_auc(normal, anomalous)
    result = {
        "bundle": str(vae.path), "precision": precision,
        "normal_samples": int(len(normal)), "anomalous_samples": int(len(anomalous)),
        "roc_auc": auc, "average_precision": evaluation.average_precision(normal, anomalous),
        "thresholds": {name: evaluation.at_threshold(normal, anomalous, value)
                       for name, value in (vae.manifest["variants"][precision].get("anomaly_quantiles") or {}).items()},
    }
    if false_alarm is not None:
        limit = evaluation.threshold_for_false_alarms(normal, false_alarm)
        result["false_alarm_target"] = {"rate": false_alarm, **evaluation.at_threshold(normal, anomalous, limit)}
    if roc is not None:
        fpr, tpr = evaluation.roc_curve(normal, anomalous)
        evaluation.save_roc_png(roc, fpr, tpr, auc)
        click.echo(f"wrote {roc}", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"samples    {result['normal_samples']} normal, {result['anomalous_samples']} anomalous ({precision})")
    click.echo(f"ROC AUC    {auc:.4f}")
    click.echo(f"avg prec   {result['average_precision']:.4f}")
    rows = [(f"{name} (validation)", r) for name, r in result["thresholds"].items()]
    if false_alarm is not None:
        rows.append((f"false alarms <= {false_alarm:g}", result["false_alarm_target"]))
    for label, r in rows:
        p = "n/a" if r["precision"] is None else f"{r['precision']:.3f}"
        click.echo(f"threshold  {label:<22} {r['threshold']:>10.4g} nats: precision {p}, recall {r['recall']:.3f}, false alarms {r['false_alarm_rate']:.3f}")


def _read_labels(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".csv":
        from .tables import read_csv

        y = read_csv(path)[0]
    else:
        y = _read_array(path)
    y = np.asarray(y).reshape(-1)
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{path}: labels must be 0 (normal) or 1 (anomalous), one per sample")
    return y.astype(np.int64)


@cli.command()
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@_THREADS
@_handle_errors
def selftest(bundle, threads):
    """Check this runtime against the bundle's conformance set (golden.json): every output of every
    variant, within the tolerances stored with it. Exit 1 naming each output that differs."""
    from .golden import selftest as run_selftest

    lines, mismatches = run_selftest(bundle if bundle is not None else default_bundle_path(), threads=threads)
    for line in lines:
        click.echo(line)
    if mismatches:
        raise click.ClickException(f"{len(mismatches)} of {len(lines)} outputs differ from the conformance set: "
                                   + "; ".join(f"{m.variant} {m.output}" for m in mismatches))
    click.echo(f"selftest passed: {len(lines)} outputs match the conformance set")


@cli.command()
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (the default serves this machine only).")
@_handle_errors
def serve(bundle, port, host):
    """Serve the latent explorer page for BUNDLE at http://HOST:PORT/ (offline: the page, the JavaScript
    runtime and onnxruntime-web's wasm all come from this checkout). Ctrl-C stops it."""
    from .serve import make_server

    try:
        server = make_server(bundle if bundle is not None else default_bundle_path(), host=host, port=port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    click.echo(f"serving {server.bundle} at http://{host}:{server.server_address[1]}/ (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main() -> None:
    """Console-script entry point."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)  # errors are raised and reported once; no notices (e.g. telemetry)
    run_cli(cli, prog_name="vae-run")


if __name__ == "__main__":
    main()
