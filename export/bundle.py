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
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vae_edge.models import model_from_checkpoint, read_checkpoint
from vae_edge.runtime import VAE
from vae_edge.runtime.bundle import MANIFEST, SCHEMA, describe_latency
from vae_edge.runtime.files import atomic_directory, atomic_write_bytes, check_writable, sha256_file
from vae_edge.trainer.data import DataError, load_data, load_recorded

from . import calibration, validate
from . import latency as timing
from .graphs import DEFAULT_OPSET, OPSETS, SPECS, check_graph, export_graph, graph_shapes, has_conv, opset_of
from .ortformat import REQUIRED_OPERATORS, to_ort, write_required_operators
from .quantize import FP16, INT8, INT8_STATIC, QuantizeConfig, quantize

log = logging.getLogger(__name__)

# int8: MLP graphs (Gemm/MatMul); int8-static: conv graphs; fp16: devices with half-precision units.
VARIANTS: dict[str, QuantizeConfig] = {"int8": INT8, "int8-static": INT8_STATIC, "fp16": FP16}
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


class CalibrationError(ValueError):
    """--calibration names data that cannot be loaded or does not fit the model."""


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
    ort: bool = False  # also write every graph in ORT format, plus required_operators.config
    calibration: str | None = None  # data SPEC for static variants; None: the training data in model.pt
    # How to time each variant for the manifest; None: not timed (a byte-stable bundle, `make bundle`).
    latency: timing.LatencyConfig | None = timing.LatencyConfig()

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown quantization {', '.join(unknown)}; expected some of: {', '.join(VARIANTS)}")
        if self.opset not in OPSETS:
            raise ValueError(f"opset must be between {OPSETS.start} and {OPSETS.stop - 1}, got {self.opset}")
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"quantization listed twice: {', '.join(self.variants)}")
        if self.calibration is not None and not any(VARIANTS[v].needs_calibration for v in self.variants):
            raise ValueError("--calibration is used by int8-static only; add it to --quantize or drop --calibration")


@dataclass
class ExportResult:
    path: Path
    manifest: dict
    report: list[str]


def export_bundle(model_path: str | os.PathLike, out: str | os.PathLike, options: ExportOptions = ExportOptions()) -> ExportResult:
    """Export ``model_path`` to the bundle folder ``out``.

    Raises:
        CheckpointError / DataError (ValueError): unusable model.pt or its data.
        CalibrationError (ValueError): ``options.calibration`` names unusable data.
        DestinationError (ValueError): ``out`` must not be replaced.
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
    if data.kind == "audio":  # PCM-in graphs of their own (export/audio.py), through the same checks
        from .audio import write_audio_bundle

        manifest, report = write_audio_bundle(ckpt, model, data, Path(out), options, qnames=_qname,
                                              manifest_for=lambda files, variants: _manifest(ckpt, model, data, model_path, files, variants, options))
        return ExportResult(Path(out), manifest, report)
    feeds, calibrated_on = _calibration(model, data, options)
    test_raw = data.test[:MAX_EVAL_SAMPLES]
    ref = validate.reference(model, data.to_model(test_raw))

    with atomic_directory(out) as tmp:
        variants = _write_graphs(tmp, model, data, options, feeds)
        for variant in options.variants:
            if VARIANTS[variant].needs_calibration:
                variants[variant]["calibration"] = calibrated_on
        files = {f.name: {"sha256": sha256_file(f), "bytes": f.stat().st_size} for f in sorted(tmp.iterdir())}
        for entry in variants.values():
            for graphs in (entry, entry.get("ort")):
                if graphs is not None:
                    graphs["bytes"] = sum(files[graphs[spec.name]]["bytes"] for spec in SPECS)

        manifest = _manifest(ckpt, model, data, model_path, files, variants, options)
        _write_manifest(tmp, manifest)
        report = _validate_and_calibrate(tmp, manifest, ref, data, test_raw, options)
        if options.latency is not None:
            report += _measure_latency(tmp, manifest, options.latency)
        _write_manifest(tmp, manifest)
    return ExportResult(Path(out), manifest, report)


def _calibration(model, data, options: ExportOptions) -> tuple[dict[str, list[dict]], dict | None]:
    """Calibration feeds per graph for the static variants (none asked: no data loaded)."""
    configs = [VARIANTS[v] for v in options.variants if VARIANTS[v].needs_calibration]
    if not configs:
        return {}, None
    source = data
    if options.calibration is not None and options.calibration != data.spec:
        try:
            # images:DIR is resized to the model's own [H, W]; other sources ignore size.
            size = tuple(model.config.input_shape[-2:]) if len(model.config.input_shape) == 3 else None
            source = load_data(options.calibration, model.config.likelihood, size=size)
        except DataError as exc:
            raise CalibrationError(str(exc)) from None
        if list(source.shape) != list(model.config.input_shape):
            raise CalibrationError(f"{options.calibration!r} has samples of shape {list(source.shape)}, the model expects {list(model.config.input_shape)}")
    config = configs[0]
    samples = config.calibration_batches * config.calibration_batch_size
    # The model's own preprocessing (recorded in model.pt), whatever data the samples come from.
    x_model = data.to_model(source.train[:samples])
    if model.config.likelihood == "bernoulli" and len(x_model) and (x_model.min() < -1e-4 or x_model.max() > 1 + 1e-4):
        raise CalibrationError(f"{source.spec!r}: values {source.train.min():g}..{source.train.max():g} lie outside the model's data range "
                               f"{float(np.min(data.offset)):g}..{float(np.max(data.offset + data.scale)):g}")
    return calibration.feeds(model, x_model, samples=samples, batch_size=config.calibration_batch_size), calibration.describe(source, options.calibration, len(x_model))


def _write_graphs(tmp: Path, model, data, options: ExportOptions, feeds: dict[str, list[dict]]) -> dict[str, dict]:
    """fp32 graphs, their variants and (``--ort``) ORT-format copies, each checked; the manifest's variants."""
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
    conv = {spec.name for spec in SPECS if has_conv(tmp / spec.filename())}
    for variant in options.variants:
        config = VARIANTS[variant]
        if config.method == "dynamic" and conv:
            log.warning("%s: dynamic int8 turns the %s graph's convolutions into ConvInteger, measured 13x slower than fp32 "
                        "(README); int8-static is the variant for conv graphs", variant, " and ".join(sorted(conv)))
        for spec in SPECS:
            with _step(f"quantizing {spec.filename()} to {variant}"):
                quantize(tmp / spec.filename(), tmp / spec.filename(variant), config=config, calibration=feeds[spec.name] if config.needs_calibration else None)
            with _step(f"onnx.checker on {spec.filename(variant)}"):
                check_graph(tmp / spec.filename(variant))
        variants[variant] = {**{spec.name: spec.filename(variant) for spec in SPECS}, "method": config.describe()}
    if options.ort:
        for variant, entry in variants.items():
            for spec in SPECS:
                with _step(f"converting {spec.filename(variant)} to ORT format"):
                    to_ort(tmp / spec.filename(variant), tmp / spec.filename(variant, "ort"), keep_float16=variant in VARIANTS and VARIANTS[variant].method == "fp16")
            entry["ort"] = {spec.name: spec.filename(variant, "ort") for spec in SPECS}
        with _step(f"writing {REQUIRED_OPERATORS}"):
            write_required_operators([tmp / e["ort"][spec.name] for e in variants.values() for spec in SPECS], tmp / REQUIRED_OPERATORS)
    return variants


def check_destination(out: Path, model_path: Path) -> None:
    """Refuse to replace anything but an earlier bundle: the export swaps the whole folder.

    Raises:
        DestinationError: ``out`` is a file, a non-empty folder without manifest.json, the folder holding
            the model, or the current folder (or one above it).
    """
    if not out.exists():
        try:
            check_writable(out)  # probes the parent folder and leaves nothing behind
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
    """Fill each variant's ``accuracy`` (and its ORT-format copy's) and ``anomaly_quantiles``; raise
    ExportError listing every check when one fails."""
    lines: list[str] = []
    failed: list[str] = []
    degraded: list[str] = []
    for variant, entry in manifest["variants"].items():
        for fmt in ("onnx", "ort") if "ort" in entry else ("onnx",):
            label = variant if fmt == "onnx" else f"{variant}.ort"
            target = entry if fmt == "onnx" else entry["ort"]
            checks, problems, vae = _check_variant(tmp, variant, fmt, target, ref, test_raw, options)
            lines += problems + [c.line() for c in checks]
            bad = problems + [c.line() for c in checks if not c.ok]
            if bad:
                (degraded if variant != "fp32" and not problems else failed).append(label)
            target["accuracy"]["passed"] = not bad
            if fmt == "onnx":
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


def _check_variant(tmp: Path, variant: str, fmt: str, target: dict, ref: validate.Reference, test_raw: np.ndarray, options: ExportOptions):
    """Load one variant's two graphs in onnxruntime and measure them against PyTorch; sets target["accuracy"].

    Returns:
        (checks, structural problems, the runtime VAE on these graphs).
    """
    quantized = variant != "fp32"
    label = variant if fmt == "onnx" else f"{variant}.ort"
    with _step(f"loading the {label} graphs in onnxruntime"):
        encoder, decoder = (ort.InferenceSession(str(tmp / target[spec.name]), providers=["CPUExecutionProvider"]) for spec in SPECS)
    checks, problems, stats = validate.compare_variant(
        label, encoder, decoder, ref,
        atol=None if quantized else options.fp32_atol,
        recon_tolerance=options.tolerance if quantized else None,
    )
    # Through the runtime itself: its sha256 checks, preprocessing and score arithmetic are tested too.
    vae = VAE.load(tmp, precision=variant, threads=1, format=fmt)
    scores = vae.anomaly_score(test_raw)
    checks += validate.compare_scores(label, scores, ref, rtol=None if quantized else options.score_rtol)
    target["accuracy"] = {
        **{c.key: c.value for c in checks},
        **stats,
        "neg_elbo": float(scores.mean()),
        "samples": len(test_raw),
    }
    return checks, problems, vae


def _measure_latency(tmp: Path, manifest: dict, config: timing.LatencyConfig) -> list[str]:
    """Time every variant (and ORT-format copy) into the manifest; report lines, slower-than-fp32 flagged."""
    manifest["latency"] = config.describe()
    timed: list[tuple[str, dict]] = []
    for variant, entry in manifest["variants"].items():
        for fmt, label, target in (("onnx", variant, entry), ("ort", f"{variant}.ort", entry.get("ort"))):
            if target is not None:
                with _step(f"timing the {label} graphs"):
                    target["latency_ms"] = timing.measure(tmp, variant, fmt, config)
                timed.append((label, target))
    baseline = manifest["variants"]["fp32"]["latency_ms"]
    lines = []
    for label, target in timed:
        target["time_vs_fp32"], slower = timing.compare(target["latency_ms"], baseline)
        target["slower_than_fp32"] = slower
        lines.append(f"  {label:<{validate.LABEL}} time, encoder + decoder: {describe_latency(target)}")
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
        **({"ort": _ort_section()} if options.ort else {}),
        "files": files,
        "latency": {"measured": False, "why": "exported with --no-latency: timings vary run to run, and this bundle is meant to be byte-stable"},
        "anomaly": {
            "score": "negative ELBO per sample in nats, reconstruction at the posterior mean plus KL",
            "calibration_split": "validation",
            "calibration_samples": len(data.val),
        },
        # Timings and the training device vary run to run; the rest identifies the model.
        "training": {k: v for k, v in (ckpt.get("metrics") or {}).items() if k not in ("epoch_seconds", "device")},
        "provenance": _provenance(model_path, ckpt),
    }


def _ort_section() -> dict:
    return {
        "required_operators": REQUIRED_OPERATORS,
        "how": ("onnxruntime's convert_onnx_models_to_ort defaults: graph optimisations applied ahead of time ('fixed' style) "
                "except the x86-only NCHWc layout; int8 QDQ not fused into x86-only kernels; fp16 graphs stop at the 'extended' "
                "level, which keeps their float16 weights"),
        "minimal_build": f"build onnxruntime with --minimal_build --include_ops_by_config {REQUIRED_OPERATORS}",
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
