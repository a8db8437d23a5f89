"""model.pt -> bundle/: the export pipeline, one named stage per module.

    graphs (graphs.py) -> quantize (quantize.py) -> ORT format (ortformat.py) -> manifest (manifest.py)
    -> accuracy gates (validate.py) -> anomaly thresholds (thresholds.py) -> latency (latency.py)
    -> onnxruntime requirements (compat.py) -> explorer directions (explorer.py) -> conformance set (golden.py)

Everything is written into a temporary folder beside the destination and swapped into place only after
every file has passed onnx.checker, loaded in onnxruntime and met its accuracy gate (destination.py): a
failed export leaves no half-written bundle and leaves an earlier bundle untouched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_edge.models import model_from_checkpoint, read_checkpoint
from vae_edge.runtime import contract
from vae_edge.runtime.likelihoods import model_bounds
from vae_edge.trainer.data import load_recorded

from . import latency as timing
from . import manifest as manifests
from . import compat, thresholds, validate
from .calibration import static_feeds
from .destination import DestinationError, check_destination, staging
from .errors import CalibrationError, ExportError, step
from .explorer import explorer_section
from .golden import write_golden
from .graphs import DEFAULT_OPSET, OPSETS, write_graphs
from .ortformat import write_ort
from .quantize import VARIANTS, write_variants
from .score import write_score_graphs

__all__ = ["CalibrationError", "DestinationError", "ExportError", "ExportOptions", "ExportResult", "VARIANTS", "check_destination", "export_bundle"]

MAX_EVAL_SAMPLES = 2000  # held-out samples used for parity; enough for a stable max-abs


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
    if ckpt["data"].get("kind") == "text":
        return _export_text(model, ckpt, model_path, Path(out), options)
    data = load_recorded(ckpt["data"])
    _check_data(model_path, model, data, ckpt["data"].get("preprocessing"))
    if data.kind == "audio":  # PCM-in graphs of their own (export/audio.py), through the same checks
        from .audio import write_audio_bundle

        manifest, report = write_audio_bundle(ckpt, model, data, model_path, Path(out), options)
        return ExportResult(Path(out), manifest, report)
    specs = contract.graphs_for(data.kind)
    feeds, calibrated_on = static_feeds(model, data, [VARIANTS[v] for v in options.variants], options.calibration)
    test_raw = data.test[:MAX_EVAL_SAMPLES]
    bounds = model_bounds(model.config.likelihood, data.valid_low, data.valid_high, np.float64(data.offset), np.float64(data.scale))
    ref = validate.reference(model, data.to_model(test_raw), bounds)

    with staging(Path(out)) as tmp:
        traced = tuple(spec for spec in specs if spec is not contract.SCORE)  # the score graph is composed from them
        write_graphs(tmp, model, traced, opset=options.opset, metadata=manifests.graph_metadata(model, data))
        variants = {contract.BASE_VARIANT: {**contract.variant_files(traced, contract.BASE_VARIANT), "method": "float32, as exported from PyTorch"}}
        variants |= write_variants(tmp, traced, options.variants, feeds)
        if contract.SCORE in specs:
            write_score_graphs(tmp, variants, likelihood=model.config.likelihood, shape=list(model.config.input_shape), obs_logvar=_obs_logvar(model))
        if options.ort:
            write_ort(tmp, specs, variants, float16=[v for v in options.variants if VARIANTS[v].method == "fp16"])
        for variant in options.variants:
            if VARIANTS[variant].needs_calibration:
                variants[variant]["calibration"] = calibrated_on
        files = manifests.record_files(tmp, variants, specs)
        manifest = manifests.build(ckpt, model, data, model_path, files, variants, specs, options)
        manifests.write(tmp, manifest)  # the gates load each variant through the runtime, which reads it
        report, vaes = validate.gate(tmp, manifest, ref, test_raw, options)
        thresholds.calibrate(manifest, vaes, data.val)
        if options.latency is not None:
            report += timing.time_variants(tmp, manifest, options.latency)
        with step("reading the graphs' IR versions and opsets"):
            manifest["onnxruntime"] = compat.requirements([tmp / name for name in sorted({entry[spec.name] for entry in variants.values() for spec in specs})])
        manifest["explorer"] = explorer_section(vaes[contract.BASE_VARIANT], data.val)
        manifests.write(tmp, manifest)  # calibrated: the conformance set's runtimes read its thresholds
        with step(f"writing the conformance set {contract.GOLDEN}"):
            write_golden(tmp, manifest, test_raw)
        manifests.write(tmp, manifest)
    return ExportResult(Path(out), manifest, report)


def _export_text(model, ckpt: dict, model_path: Path, out: Path, options: ExportOptions) -> ExportResult:
    """The sentence VAE's bundle (export/text.py): its three graphs, fp32 and dynamic int8, its own gates."""
    from vae_edge.trainer.textdata import load_text_recorded

    from .text import write_text_bundle

    if options.ort or options.calibration is not None:
        raise ExportError("--ort and --calibration do not apply to text bundles yet")
    manifest, report = write_text_bundle(out, model, load_text_recorded(ckpt["data"]), ckpt, model_path, options)
    return ExportResult(out, manifest, report)


def _obs_logvar(model) -> np.ndarray | None:
    logvar = model.observation_logvar()
    return None if logvar is None else logvar.detach().double().numpy()


def _check_data(model_path: Path, model, data, recorded: object) -> None:
    """The data recorded in model.pt must still be what the model was trained on.

    Raises:
        ExportError: another sample shape, or another preprocessing (the data changed since training).
    """
    if list(data.shape) != list(model.config.input_shape):
        raise ExportError(f"{model_path}: data {data.spec!r} has samples of shape {list(data.shape)}, the model expects {list(model.config.input_shape)}")
    if isinstance(recorded, dict) and not _same_affine(recorded, data.preprocessing):
        raise ExportError(f"{model_path}: data {data.spec!r} now gives another preprocessing than the model was trained with (the data changed?)")


def _same_affine(a: dict, b: dict) -> bool:
    # float32 statistics round-trip through float64 lists: equal up to float32 rounding.
    return all(np.allclose(np.asarray(a.get(k), np.float64), np.asarray(b.get(k), np.float64), rtol=1e-6, atol=0) for k in ("offset", "scale"))
