"""model.pt -> bundle/: graphs, quantized variants, parity checks against PyTorch, manifest.

Everything is written into a temporary folder beside the destination and renamed into place only after
every file has passed onnx.checker, loaded in onnxruntime and met its accuracy gate: a failed export
leaves no half-written bundle and leaves an earlier bundle untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vae_edge.models import model_from_checkpoint, read_checkpoint
from vae_edge.runtime import VAE
from vae_edge.runtime.bundle import MANIFEST, SCHEMA
from vae_edge.runtime.files import atomic_directory, atomic_write_bytes, sha256_file
from vae_edge.trainer.data import load_recorded

from . import validate
from .graphs import DEFAULT_OPSET, OPSETS, SPECS, check_graph, export_graph, graph_shapes, opset_of
from .quantize import INT8, QuantizeConfig, quantize

log = logging.getLogger(__name__)

VARIANTS: dict[str, QuantizeConfig] = {"int8": INT8}
QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)
MAX_EVAL_SAMPLES = 2000  # held-out samples used for parity; enough for a stable max-abs


class ExportError(RuntimeError):
    """The export ran but its result failed a check; nothing was written.

    ``report`` holds one line per check (✓/✗ with the measured value), for the user to see why.
    """

    def __init__(self, message: str, report: list[str] | None = None):
        super().__init__(message)
        self.report = report or []


class DestinationError(ValueError):
    """--out names a folder that must not be replaced (not a bundle, or it holds the model)."""


@dataclass(frozen=True)
class ExportOptions:
    """What to write and how strict to be."""

    variants: tuple[str, ...] = ("int8",)
    opset: int = DEFAULT_OPSET
    # Largest relative change in reconstruction NLL that a quantized variant may show against PyTorch.
    tolerance: float = 0.02
    allow_degraded: bool = False  # write the bundle even if a quantized variant misses its gate
    fp32_atol: float = 1e-4
    score_rtol: float = 1e-4  # runtime anomaly score vs PyTorch negative ELBO, fp32

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown quantization {', '.join(unknown)}; expected some of: {', '.join(VARIANTS)}")
        if self.opset not in OPSETS:
            raise ValueError(f"opset must be between {OPSETS.start} and {OPSETS.stop - 1}, got {self.opset}")
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")


@dataclass
class ExportResult:
    path: Path
    manifest: dict
    report: list[str]


def export_bundle(model_path: str | os.PathLike, out: str | os.PathLike, options: ExportOptions = ExportOptions()) -> ExportResult:
    """Export ``model_path`` to the bundle folder ``out``.

    Raises:
        CheckpointError / DataError (ValueError): unusable model.pt or its data.
        ExportError: a variant failed its accuracy gate or a graph failed its checks; ``out`` untouched.
    """
    model_path = Path(model_path)
    check_destination(Path(out), model_path)
    ckpt = read_checkpoint(model_path)
    model = model_from_checkpoint(ckpt, source=str(model_path))
    data = load_recorded(ckpt["data"])
    if list(data.shape) != list(model.config.input_shape):
        raise ExportError(f"{model_path}: data {data.spec!r} has samples of shape {list(data.shape)}, the model expects {list(model.config.input_shape)}")
    recorded = ckpt["data"].get("preprocessing")
    if isinstance(recorded, dict) and not _same_affine(recorded, data.preprocessing):
        raise ExportError(f"{model_path}: data {data.spec!r} now gives another preprocessing than the model was trained with (the data changed?)")
    test_raw = data.test[:MAX_EVAL_SAMPLES]
    ref = validate.reference(model, data.to_model(test_raw))

    with atomic_directory(out) as tmp:
        files: dict[str, dict] = {}
        variants: dict[str, dict] = {"fp32": {"encoder": "encoder.onnx", "decoder": "decoder.onnx", "method": "float32, as exported from PyTorch"}}
        meta = _graph_metadata(model, data)
        for spec in SPECS:
            path = tmp / spec.filename()
            with _step(f"exporting the {spec.name} graph (opset {options.opset})"):
                proto = export_graph(model, spec, path, opset=options.opset, metadata=meta)
            if opset_of(proto) != options.opset:
                raise ExportError(f"asked for opset {options.opset}, torch.onnx wrote opset {opset_of(proto)}")
            with _step(f"onnx.checker on {path.name}"):
                check_graph(path)
        for variant in options.variants:
            config = VARIANTS[variant]
            for spec in SPECS:
                with _step(f"quantizing {spec.filename()} to {variant}"):
                    quantize(tmp / spec.filename(), tmp / spec.filename(variant), config=config)
                with _step(f"onnx.checker on {spec.filename(variant)}"):
                    check_graph(tmp / spec.filename(variant))
            variants[variant] = {**{spec.name: spec.filename(variant) for spec in SPECS}, "method": config.describe()}
        for f in sorted(tmp.iterdir()):
            files[f.name] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}

        manifest = _manifest(ckpt, model, data, model_path, files, variants, options)
        _write_manifest(tmp, manifest)
        report = _validate_and_calibrate(tmp, manifest, ref, data, test_raw, options)
        _write_manifest(tmp, manifest)
    return ExportResult(Path(out), manifest, report)


def check_destination(out: Path, model_path: Path) -> None:
    """Refuse to replace anything but an earlier bundle: the export swaps the whole folder.

    Raises:
        DestinationError: ``out`` is a file, a non-empty folder without manifest.json, the folder holding
            the model, or the current folder (or one above it).
    """
    if not out.exists():
        parent = out.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".probe", dir=parent))
        except OSError as exc:
            raise DestinationError(f"{out}: cannot write there ({exc.strerror or exc})") from None
        return
    if not out.is_dir():
        raise DestinationError(f"{out}: exists and is not a folder")
    real = out.resolve()
    if real == Path.cwd().resolve() or real in Path.cwd().resolve().parents:
        raise DestinationError(f"{out}: is the current folder or above it; name a bundle folder of its own")
    if real in model_path.resolve().parents:
        raise DestinationError(f"{out}: holds {model_path.name}; name a bundle folder of its own")
    if any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise DestinationError(f"{out}: exists and is not a bundle (no {MANIFEST}); refusing to replace it")


@np.errstate(all="ignore")  # overflow in a broken model shows up as a failed check, not a warning
def _validate_and_calibrate(tmp: Path, manifest: dict, ref: validate.Reference, data, test_raw: np.ndarray, options: ExportOptions) -> list[str]:
    """Fill each variant's ``accuracy`` and ``anomaly_quantiles``; raise ExportError listing every failure."""
    lines: list[str] = []
    failed: list[str] = []
    degraded: list[str] = []
    for variant, entry in manifest["variants"].items():
        quantized = variant != "fp32"
        with _step(f"loading the {variant} graphs in onnxruntime"):
            encoder, decoder = (ort.InferenceSession(str(tmp / entry[spec.name]), providers=["CPUExecutionProvider"]) for spec in SPECS)
        checks, problems, stats = validate.compare_variant(
            variant, encoder, decoder, ref,
            atol=None if quantized else options.fp32_atol,
            recon_tolerance=options.tolerance if quantized else None,
        )
        # Through the runtime itself: its sha256 checks, preprocessing and score arithmetic are tested too.
        vae = VAE.load(tmp, precision=variant, threads=1)
        scores = vae.anomaly_score(test_raw)
        checks.append(validate.compare_scores(variant, scores, ref, rtol=None if quantized else options.score_rtol))
        lines += problems + [c.line() for c in checks]
        bad = problems + [c.line() for c in checks if not c.ok]
        if bad:
            (degraded if quantized and not problems else failed).append(variant)
        entry["accuracy"] = {
            **{c.key: c.value for c in checks},
            **stats,
            "neg_elbo": float(scores.mean()),
            "samples": len(test_raw),
            "passed": not bad,
        }
        val_scores = vae.anomaly_score(data.val)
        entry["anomaly_quantiles"] = {_qname(q): float(np.quantile(val_scores, q)) for q in QUANTILES}
    manifest["accuracy_reference"] = {
        "description": "PyTorch on the test split; recon_nll and neg_elbo are nats per sample at z = mu",
        "recon_nll": float(ref.recon_nll.mean()),
        "neg_elbo": float(ref.neg_elbo.mean()),
        "split": "test",
        "samples": len(test_raw),
    }
    if failed or (degraded and not options.allow_degraded):
        names = ", ".join(failed + degraded)
        hint = "" if failed else " (--allow-degraded writes it anyway, --tolerance sets the limit)"
        raise ExportError(f"variant {names} failed its accuracy gate{hint}", lines)
    return lines


@contextlib.contextmanager
def _step(what: str):
    """Turn a failure inside torch.onnx, onnx or onnxruntime into one ExportError line naming the step."""
    try:
        yield
    except (ExportError, OSError):
        raise
    except Exception as exc:  # these libraries raise many unrelated exception types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"{what} failed: {type(exc).__name__}: {first}") from exc


def _qname(q: float) -> str:
    return "p" + f"{q * 100:.1f}".rstrip("0").rstrip(".")


def _same_affine(a: dict, b: dict) -> bool:
    # float32 statistics round-trip through float64 lists: equal up to float32 rounding.
    return all(np.allclose(np.asarray(a.get(k), np.float64), np.asarray(b.get(k), np.float64), rtol=1e-6, atol=0) for k in ("offset", "scale"))


def likelihood_params(model) -> dict | None:
    """The Gaussian p(x|z) variance as the manifest and the decoder metadata state it (None for Bernoulli):
    std in model (standardised) units, a number when fixed or a nested list of the sample shape when learned."""
    cfg = model.config
    if cfg.likelihood != "gaussian":
        return None
    if cfg.gaussian_std is not None:
        return {"variance": "fixed", "std": cfg.gaussian_std}
    std = np.exp(0.5 * model.observation_logvar().detach().double().numpy())
    return {"variance": "learned", "std": std.tolist()}


def _graph_metadata(model, data) -> dict:
    # Shown by Netron and readable from any ONNX Runtime API without the manifest.
    meta = {
        "vae_edge.schema": SCHEMA,
        "vae_edge.latent_dim": model.config.latent_dim,
        "vae_edge.input_shape": json.dumps(list(model.config.input_shape)),
        "vae_edge.likelihood": model.config.likelihood,
        "vae_edge.preprocessing": json.dumps(data.preprocessing),
        "vae_edge.dataset": data.name,
    }
    params = likelihood_params(model)
    if params is not None:
        meta["vae_edge.likelihood_params"] = json.dumps(params)
    return meta


def _manifest(ckpt: dict, model, data, model_path: Path, files: dict, variants: dict, options: ExportOptions) -> dict:
    cfg = model.config
    return {
        "schema": SCHEMA,
        "model": {
            "arch": cfg.arch, "latent_dim": cfg.latent_dim, "likelihood": cfg.likelihood,
            **({"likelihood_params": params} if (params := likelihood_params(model)) is not None else {}),
            "config": cfg.to_dict(),
        },
        "data": {
            "dataset": data.name,
            "kind": data.kind,
            "shape": list(data.shape),
            "dtype": "float32",
            "preprocessing": data.preprocessing,
            "units": "inputs and outputs of the runtime are in the data's own units; the graphs see (x - offset) / scale",
        },
        "graphs": graph_shapes(model),
        "opset": options.opset,
        "variants": variants,
        "files": files,
        "anomaly": {
            "score": "negative ELBO per sample in nats, reconstruction at the posterior mean plus KL",
            "calibration_split": "validation",
            "calibration_samples": len(data.val),
        },
        # Timings and the training device vary run to run; the rest identifies the model.
        "training": {k: v for k, v in (ckpt.get("metrics") or {}).items() if k not in ("epoch_seconds", "device")},
        "provenance": _provenance(model_path, ckpt),
    }


def _provenance(model_path: Path, ckpt: dict) -> dict:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    # SOURCE_DATE_EPOCH (reproducible-builds convention) pins the timestamp so `make bundle` is byte-stable.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return {
        "source": model_path.name,
        # Of the weights, not of the file: model.pt also holds timings, which differ between identical runs.
        "weights_sha256": weights_digest(ckpt["state_dict"]),
        "created": when.replace(microsecond=0).isoformat(),
        "versions": {name: version(name) for name in ("vae-edge", "torch", "onnx", "onnxruntime", "onnxscript")},
        "python": platform.python_version(),
    }


def weights_digest(state_dict: dict) -> str:
    """sha256 over parameter names, dtypes, shapes and bytes, in order."""
    h = hashlib.sha256()
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{list(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _write_manifest(folder: Path, manifest: dict) -> None:
    atomic_write_bytes(folder / MANIFEST, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())
