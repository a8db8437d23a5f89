"""model.pt -> bundle/: the export pipeline, one named stage per module.

    graphs (graphs.py) -> quantize, with the fallback search (quantize.py, search.py) -> per-graph
    recommendation (recommend.py, --quantize auto) -> ORT format (ortformat.py) -> manifest (manifest.py)
    -> accuracy gates (validate.py) -> anomaly thresholds (thresholds.py) -> latency (latency.py)
    -> edge readiness (readiness.py) -> onnxruntime requirements (compat.py) -> explorer directions
    (explorer.py) -> conformance set (golden.py)

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
from vae_edge.trainer.data import DataError, load_recorded

from . import latency as timing
from . import manifest as manifests
from . import compat, readiness, thresholds, validate
from .calibration import static_feeds
from .destination import DestinationError, check_destination, staging
from .errors import CalibrationError, ExportError, step
from .explorer import explorer_section
from .golden import write_golden
from .graphs import write_graphs
from .options import AUTO, ExportOptions
from .ortformat import write_ort
from .quantize import VARIANTS, warn_dynamic_on_conv
from .recommend import recommend
from .score import write_score_graphs
from .search import Judge, search, variant_entry

__all__ = ["CalibrationError", "DestinationError", "ExportError", "ExportOptions", "ExportResult", "VARIANTS", "check_destination", "export_bundle"]

MAX_EVAL_SAMPLES = 2000  # held-out samples used for parity; enough for a stable max-abs


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
        ExportError: a requested variant could not be brought within its accuracy gate (naming the best
            candidate the search found), or a graph failed its checks; ``out`` untouched.
    """
    model_path = Path(model_path)
    check_destination(Path(out), model_path)
    ckpt = read_checkpoint(model_path)
    model = model_from_checkpoint(ckpt, source=str(model_path))
    if ckpt["data"].get("kind") == "text":
        return _export_text(model, ckpt, model_path, Path(out), options)
    data = load_recorded(ckpt["data"], base=model_path.parent, data=options.data, val_data=options.val_data, test_data=options.test_data)
    _check_data(model_path, model, data, ckpt["data"].get("preprocessing"))
    if data.kind == "audio":  # PCM-in graphs of their own (export/audio.py), through the same checks
        if model.config.prior != "standard":
            raise ExportError(f"{model_path}: an audio bundle's runtime scores and samples under N(0, I); this model has the prior {model.config.prior!r}")
        from .audio import write_audio_bundle

        manifest, report = write_audio_bundle(ckpt, model, data, model_path, Path(out), options)
        return ExportResult(Path(out), manifest, report)
    specs = contract.graphs_for(data.kind)
    if not options.score_graph:
        specs = tuple(spec for spec in specs if spec is not contract.SCORE)
    feeds, calibrated_on = static_feeds(model, data, [VARIANTS[v] for v in options.methods], options.calibration)
    # The parity checks want held-out samples: the test split, or without one the validation split (said in the report).
    split = "test" if len(data.test) else "validation"
    test_raw = (data.test if len(data.test) else data.val)[:MAX_EVAL_SAMPLES]
    bounds = model_bounds(model.config.likelihood, data.valid_low, data.valid_high, np.float64(data.offset), np.float64(data.scale))
    ref = validate.reference(model, data.to_model(test_raw), bounds)
    notes = [] if len(data.test) else [f"no test split in {model_path.name} (trained with test 0 and no --test-data): "
                                       f"the accuracy gates use the validation split ({len(test_raw)} samples), which also calibrates the anomaly thresholds"]

    with staging(Path(out)) as tmp:
        traced = tuple(spec for spec in specs if spec is not contract.SCORE)  # the score graph is composed from them
        write_graphs(tmp, model, traced, opset=options.opset, metadata=manifests.graph_metadata(model, data))
        variants = {contract.BASE_VARIANT: {**contract.variant_files(traced, contract.BASE_VARIANT), "method": "float32, as exported from PyTorch"}}
        report, quantization = _quantize(tmp, traced, options, feeds, Judge(ref, options.tolerance), variants)
        if options.auto:
            recommended, variants[AUTO], lines = recommend(tmp, traced, {v: e for v, e in variants.items()}, contract.sizes(data.shape, model.config.latent_dim),
                                                         Judge(ref, options.tolerance), effort=options.recommend_effort, timed=options.latency is not None)
            quantization["recommended"] = recommended
            report += lines
        if contract.SCORE in specs:
            write_score_graphs(tmp, variants, likelihood=model.config.likelihood, shape=list(model.config.input_shape), obs_logvar=_obs_logvar(model),
                               prior=manifests.prior_arrays(manifests.prior_block(model)))
        if options.ort:
            write_ort(tmp, specs, variants, float16=[v for v in variants if v in VARIANTS and VARIANTS[v].method == "fp16"])
        for variant in variants:
            if variant in VARIANTS and VARIANTS[variant].needs_calibration:
                variants[variant]["calibration"] = calibrated_on | {"method": variants[variant]["search"].get("calibration", "minmax")}
        files = manifests.record_files(tmp, variants, specs)
        manifest = manifests.build(ckpt, model, data, model_path, files, variants, specs, options)
        manifest["quantization"] = quantization
        manifests.write(tmp, manifest)  # the gates load each variant through the runtime, which reads it
        lines, vaes = validate.gate(tmp, manifest, ref, test_raw, options, split=split)
        report = notes + report + lines
        thresholds.calibrate(manifest, vaes, data.val)
        if options.latency is not None:
            report += timing.time_variants(tmp, manifest, options.latency)
        with step("assessing edge readiness"):
            manifest["readiness"] = readiness.assess(tmp, manifest, specs, timed=options.latency is not None)
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

    if options.calibration is not None:
        raise ExportError("--calibration applies to int8-static, which text bundles do not offer")
    manifest, report = write_text_bundle(out, model, load_text_recorded(ckpt["data"], base=model_path.parent), ckpt, model_path, options)
    return ExportResult(out, manifest, report)


def _obs_logvar(model) -> np.ndarray | None:
    logvar = model.observation_logvar()
    return None if logvar is None else logvar.detach().double().numpy()


def _quantize(folder: Path, specs, options: ExportOptions, feeds: dict, judge: Judge, variants: dict) -> tuple[list[str], dict]:
    """Build each requested variant with the fallback search into ``folder`` and ``variants``.

    Returns:
        (report lines, the manifest's ``quantization`` section: tolerance, budget, variants left out).

    Raises:
        ExportError: an explicitly requested variant that the search could not bring within the gate
            (unless ``options.allow_degraded``), naming the best candidate and its figures.
    """
    warn_dynamic_on_conv(folder, specs, options.methods)
    section: dict = {"tolerance": options.tolerance, "search": options.search, "search_budget_s": options.search_budget_s,
                     "mode": AUTO if options.auto else "explicit", "left_out": {}}
    lines: list[str] = []
    for variant in options.methods:
        result = search(folder, specs, variant, feeds, judge, budget_s=options.search_budget_s, search_on=options.search)
        lines += [s.line(variant) for s in result.steps]
        if result.holds or (options.allow_degraded and not options.auto):
            variants[variant] = variant_entry(specs, variant, result, timed=options.latency is not None)
            continue
        for spec in specs:
            (folder / spec.filename(variant)).unlink()
        if options.auto:
            timed = options.latency is not None
            section["left_out"][variant] = {"reason": f"misses the accuracy gate: {result.summary(timed)}", "search": result.to_manifest(timed)}
            lines.append(f"  {variant}: left out, {result.summary()}")
            continue
        hint = ("the search is off: drop --no-search" if not options.search else
                "--search-budget gives the search more time" if result.stopped == "time budget spent" else "every quantizable node was tried")
        raise ExportError(f"variant {variant} cannot be brought within its accuracy gate (reconstruction NLL within {options.tolerance * 100:g} %; "
                          f"{hint}, --allow-degraded writes it anyway, --tolerance sets the limit): {result.summary()}", lines)
    return lines, section


def _check_data(model_path: Path, model, data, recorded: object) -> None:
    """The data recorded in model.pt must still be what the model was trained on.

    Raises:
        DataError: another sample shape, or another preprocessing (the data changed since training):
            bad input (exit 2), not a failed export.
    """
    if list(data.shape) != list(model.config.input_shape):
        raise DataError(f"{model_path}: data {data.spec!r} has samples of shape {list(data.shape)}, the model expects {list(model.config.input_shape)}")
    if isinstance(recorded, dict) and not _same_affine(recorded, data.preprocessing):
        raise DataError(f"{model_path}: data {data.spec!r} now gives another preprocessing than the model was trained with (the data changed?)")


def _same_affine(a: dict, b: dict) -> bool:
    # float32 statistics round-trip through float64 lists: equal up to float32 rounding.
    return all(np.allclose(np.asarray(a.get(k), np.float64), np.asarray(b.get(k), np.float64), rtol=1e-6, atol=0) for k in ("offset", "scale"))
