"""The bundles the benchmarks time, built with vae-train + vae-export into build/bench/ and reused.

A bundle is rebuilt when the command lines that made it change (e.g. the exporter gains a variant), or
when it is missing; nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from . import child_env

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchModel:
    """One model to benchmark: how to train it, and why it is in the table."""

    name: str
    about: str
    train_args: tuple[str, ...]
    export_args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    # Train on the 28x28 IDX stand-in (scikit-learn's digits upscaled, bench/make_digits28_idx.py), made
    # once under the build folder: the 1x28x28 conv shape the quantization pitfalls were measured on.
    digits28: bool = False


# Pinned to Kingma & Welling's 64-400-8, the model issue 15's LiteRT goals were set on (vae-train's
# default before issue 12), with its prior N(0, I) (vae-train's --prior auto now takes the VampPrior here,
# whose score graph adds the mixture's KL), so that the speed ratios stay comparable when the defaults
# change; the other settings are vae-train's defaults, 100 epochs (seed 0, one thread). Exported with --quantize auto (exporter_variants): every variant that holds its accuracy gate, after
# the fallback search, and the recommended pair ("auto"); a variant left out is named in the manifest.
DIGITS = BenchModel(
    name="digits-mlp",
    about="digits MLP 64-400-8, prior N(0, I) (pinned: the model issue 15's LiteRT goals were set on; otherwise vae-train's defaults, 100 epochs)",
    train_args=("--seed", "0", "--quiet", "--hidden", "400", "--latent", "8", "--prior", "standard", "--epochs", "100"),
    export_args=("--allow-degraded",),
    env=(("OMP_NUM_THREADS", "1"),),
)
# Large enough that batch-1024 decode is dominated by one 1024x2048x2048 matrix product (compute-bound);
# one epoch is enough for timing.
LARGE = BenchModel(
    name="large-mlp",
    about="large MLP 64-2048-2048-8, one epoch on the digits (for throughput against the matmul peak)",
    train_args=("--seed", "0", "--quiet", "--hidden", "2048", "--hidden", "2048", "--prior", "standard", "--epochs", "1", "--iw-samples", "1"),
    export_args=("--allow-degraded",),
)
# The conv VAE as vae-train makes it (the default decoder style, sub-pixel since issue 15: the style
# whose shipped int8 decoder is faster than fp32, docs/quantization.md). Three epochs: enough for the
# accuracy figures to mean something. Issue 15's conv goal is read on this model.
CONV = BenchModel(
    name="conv28",
    about="conv VAE 32-64, the default (sub-pixel) decoder, 1x28x28 (digits upscaled), 3 epochs",
    train_args=("--seed", "0", "--quiet", "--arch", "conv", "--epochs", "3", "--iw-samples", "1"),
    export_args=("--allow-degraded",),
    digits28=True,
)
# The same conv VAE with the two other decoder styles, so that `make bench` shows which one's shipped
# variant decodes fastest (models/config.py's default follows it).
CONV_STYLES = tuple(
    BenchModel(
        name=f"conv28-{style}",
        about=f"conv VAE 32-64, {style} decoder, 1x28x28 (digits upscaled), 3 epochs",
        train_args=(*CONV.train_args, "--decoder-style", style),
        export_args=CONV.export_args,
        digits28=True,
    )
    for style in ("transpose", "upsample")
)
MODELS = (DIGITS, LARGE, CONV, *CONV_STYLES)


def exporter_variants() -> tuple[str, ...]:
    """What the benchmarks ask the exporter for: auto where it offers it (every variant that holds its
    gate, plus the recommended pair), else every quantized variant it offers."""
    from vae_edge.export import bundle

    return (bundle.AUTO,) if hasattr(bundle, "AUTO") else tuple(bundle.VARIANTS)


def exporter_flags() -> tuple[str, ...]:
    """``--ort`` where the exporter can also write ORT-format graphs, so that those are timed too."""
    from vae_edge.export.bundle import ExportOptions

    return ("--ort",) if "ort" in {f.name for f in fields(ExportOptions)} else ()


def ensure_bundle(model: BenchModel, build: Path) -> tuple[Path, Path]:
    """(model.pt, bundle folder) for ``model`` under ``build``, training and exporting only when needed.

    Raises:
        RuntimeError: vae-train or vae-export failed (their last lines of output in the message).
    """
    folder = build / model.name
    model_pt, bundle = folder / "model.pt", folder / "bundle"
    variants = exporter_variants()
    data = ("--data", f"idx:{_digits28(build).resolve()}") if model.digits28 else ()
    train = [_tool("vae-train"), *data, *model.train_args, "--out", str(model_pt)]
    export = [_tool("vae-export"), str(model_pt), "--out", str(bundle), "--quantize", ",".join(variants) or "none", *exporter_flags(), *model.export_args]
    stamp = folder / "commands.json"
    wanted = json.dumps({"train": train[1:], "export": export[1:]}, indent=1)
    if stamp.is_file() and stamp.read_text() == wanted and (bundle / "manifest.json").is_file():
        return model_pt, bundle
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    log.warning("building %s in %s (once; reused afterwards)", model.name, folder)
    env = child_env(**dict(model.env))
    for cmd in (train, export):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
            raise RuntimeError(f"building {model.name}: {Path(cmd[0]).name} exited {done.returncode}: {tail}")
    stamp.write_text(wanted)  # last: a half-built folder is never taken for a finished one
    return model_pt, bundle


def _digits28(build: Path) -> Path:
    """The 28x28 IDX file under ``build``, written (atomically) the first time it is asked for."""
    from vae_edge.trainer.readers import write_idx

    from .make_digits28_idx import digits28

    path = build / "digits28-images-idx3-ubyte.gz"
    if not path.is_file():
        build.mkdir(parents=True, exist_ok=True)
        write_idx(path, digits28())
    return path


def _tool(name: str) -> str:
    """The console script installed beside this interpreter (the project's venv)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name
