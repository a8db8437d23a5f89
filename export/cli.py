"""vae-export: model.pt -> bundle folder. Thin: parse, call export_bundle, print the report.

Option defaults come from ExportOptions (options.py, no torch), the dataclass the options fill, so that
the command and the library cannot drift apart. Torch loads inside the command.
"""

from __future__ import annotations

import logging
from dataclasses import MISSING, fields
from pathlib import Path

import click

from vae_edge.runtime.clitools import require_workstation_extras, run_cli

from .options import OPSETS, ExportOptions


def _default(name: str):
    """ExportOptions' default for the field ``name``: the option's default."""
    field = next(f for f in fields(ExportOptions) if f.name == name)
    return field.default if field.default is not MISSING else field.default_factory()


def _variants(ctx, param, value: tuple[str, ...]) -> tuple[str, ...]:
    """--quantize's values, comma-separated or repeated (``--quantize int8 --quantize fp16``), as one tuple."""
    items = tuple(v.strip() for given in value for v in given.split(",") if v.strip())
    return () if items == ("none",) else items


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vae-edge")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("bundle"), show_default=True, help="Bundle folder to write (an earlier bundle there is replaced atomically).")
@click.option("--quantize", "variants", multiple=True, default=(",".join(_default("variants")) or "none",), show_default=True, callback=_variants,
              help="'auto' (every variant that holds its gate, and the fastest per graph recommended: --precision auto), or variants to add to fp32 (comma-separated or repeated), or 'none': "
                   "int8 (dynamic; MLP graphs), int8-static (QDQ with calibration; conv graphs), int8-weights (int8 weights, float compute), fp16 (half-precision devices).")
@click.option("--data", "data_spec", metavar="SPEC", default=None, help="The training data, when they moved since training (default: those recorded in MODEL, at their path or beside MODEL).")
@click.option("--val-data", "val_spec", metavar="SPEC", default=None, help="The validation data, when the model was trained with --val-data and they moved.")
@click.option("--test-data", "test_spec", metavar="SPEC", default=None, help="The test data, when the model was trained with --test-data and they moved.")
@click.option("--calibration", metavar="SPEC", default=None, help="Data for int8-static calibration, as vae-train's --data (default: the training data recorded in MODEL).")
@click.option("--ort", "ort_format", is_flag=True, help="Also write every graph in ORT format, and required_operators.config for a minimal onnxruntime build.")
@click.option("--no-score-graph", is_flag=True, help="Leave out the fused score graphs (score.*.onnx, about half of each variant's bytes): anomaly scores then take the encoder and decoder, two session calls.")
@click.option("--opset", type=click.IntRange(OPSETS.start, OPSETS.stop - 1), default=_default("opset"), show_default=True, help="ONNX opset of the graphs (torch.onnx writes 18 or newer).")
@click.option("--tolerance", type=click.FloatRange(min=0), default=_default("tolerance"), show_default=True, help="Largest relative change in reconstruction NLL a quantized variant may show.")
@click.option("--allow-degraded", is_flag=True, help="Write the bundle even when a quantized variant misses --tolerance.")
@click.option("--search-budget", type=click.FloatRange(min=0), default=_default("search_budget_s"), show_default=True, metavar="SECONDS",
              help="Time per variant for the fallback search when it misses --tolerance (calibration methods, nodes kept in float).")
@click.option("--no-search", is_flag=True, help="No fallback search: a variant that misses --tolerance fails as built.")
@click.option("--no-latency", is_flag=True, help="Do not time the variants: the manifest then depends only on the model (a byte-stable bundle, as `make bundle` writes).")
@click.option("--web", type=click.Path(file_okay=False, path_type=Path), default=None, help="Also write the latent explorer page for the bundle as a static folder (page, runtime, onnxruntime-web wasm, a copy of the bundle).")
def cli(model, out, variants, data_spec, val_spec, test_spec, calibration, ort_format, no_score_graph, opset, tolerance, allow_degraded, search_budget, no_search, no_latency, web):
    """Export MODEL (a model.pt from vae-train) to an ONNX bundle: encoder, decoder, quantized variants and
    manifest.json, each variant checked against PyTorch and timed before anything is written."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _show_search_as_it_goes()
    require_workstation_extras("vae-export")
    from vae_edge.models import CheckpointError
    from vae_edge.trainer.data import DataError

    from .bundle import CalibrationError, DestinationError, ExportError, export_bundle

    try:
        options = export_options(variants=variants, opset=opset, tolerance=tolerance, allow_degraded=allow_degraded, ort_format=ort_format, search_budget=search_budget,
                                 no_search=no_search, no_score_graph=no_score_graph, no_latency=no_latency, calibration=calibration, data_spec=data_spec, val_spec=val_spec, test_spec=test_spec)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if web is not None:
        from vae_edge.runtime.serve import AssetsError, runtime_js

        _check_page_kind(model)  # both before minutes of export, not after
        try:
            runtime_js()
        except AssetsError as exc:
            raise click.BadParameter(str(exc), param_hint="--web") from None
    try:
        result = export_bundle(model, out, options)
    except DestinationError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    except CheckpointError as exc:
        raise click.BadParameter(str(exc), param_hint="MODEL") from None
    except CalibrationError as exc:
        raise click.BadParameter(str(exc), param_hint="--calibration") from None
    except DataError as exc:
        given = {"--data": data_spec, "--val-data": val_spec, "--test-data": test_spec}
        if given.get(exc.option):
            raise click.BadParameter(str(exc), param_hint=exc.option) from None
        raise click.UsageError(f"cannot load the data recorded in {model}: {exc} (moved? point at it with --data, --val-data or --test-data)") from None
    except ExportError as exc:
        for line in _not_shown(exc.report):
            click.echo(line, err=True)
        raise click.ClickException(f"export failed, nothing written to {out}: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from None

    for line in _not_shown(result.report):
        click.echo(line)
    for name, meta in result.manifest["files"].items():
        click.echo(f"  {name:<28} {meta['bytes']:>9,} bytes")
    click.echo(f"wrote {result.path}/ ({', '.join(result.manifest['variants'])})")
    if web is not None:
        _write_web(result.path, web)


def export_options(*, variants, opset, tolerance, allow_degraded, ort_format, search_budget, no_search, no_latency, calibration, no_score_graph,
                   data_spec, val_spec, test_spec) -> ExportOptions:
    """The ExportOptions that vae-export's options ask for (the flags' off state is each field's default).

    Raises:
        ValueError: options that do not go together (ExportOptions' checks).
    """
    return ExportOptions(variants=variants, opset=opset, tolerance=tolerance, allow_degraded=allow_degraded, ort=ort_format, score_graph=not no_score_graph, search=not no_search,
                         search_budget_s=search_budget, calibration=calibration, data=data_spec, val_data=val_spec, test_data=test_spec,
                         **({"latency": None} if no_latency else {}))


def _check_page_kind(model: Path) -> None:
    """--web for a model whose data the explorer page cannot run (audio, text) is refused before the export.

    Raises:
        click.BadParameter: naming the data kind.
    """
    from vae_edge.models import CheckpointError, read_checkpoint
    from vae_edge.runtime.contract import DEFAULT_KIND
    from vae_edge.runtime.serve import PAGE_KINDS

    try:
        kind = (read_checkpoint(model).get("data") or {}).get("kind", DEFAULT_KIND)
    except CheckpointError as exc:
        raise click.BadParameter(str(exc), param_hint="MODEL") from None
    if kind not in PAGE_KINDS:
        raise click.BadParameter(f"{model} was trained on {kind} data; the explorer page runs {', '.join(PAGE_KINDS)} bundles only (runtime-js)", param_hint="--web")


def _write_web(bundle: Path, web: Path) -> None:
    from vae_edge.runtime.serve import write_site

    try:
        write_site(bundle, web)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--web") from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {web}: {exc.strerror or exc}") from None
    click.echo(f"wrote {web}/ (the latent explorer: serve the folder with any static web server, e.g. python -m http.server -d {web} -b 127.0.0.1)")


def _not_shown(lines: list[str]) -> list[str]:
    # The search and timing lines went to stderr as they happened.
    return [line for line in lines if not line.lstrip().startswith(("search ", "timing ", "recommended "))]


def _show_search_as_it_goes() -> None:
    """The fallback search and the per-graph timing log each step at INFO: shown on stderr as they happen."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("vae_edge.export.search", "vae_edge.export.recommend"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.handlers[:] = [handler]


def main() -> None:
    """Console-script entry point."""
    run_cli(cli, prog_name="vae-export")
