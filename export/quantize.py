"""Quantized and half-precision variants of a graph: one entry point, ``quantize(src, dst, *, config)``.

Three methods, each the right one for a kind of graph (measured here; docs/quantization.md):

- ``dynamic`` int8 (onnxruntime ``quantize_dynamic``): weights int8 ahead of time, activations uint8 per
  batch at run time; Gemm/MatMul become MatMulInteger. Right for MLP graphs; on conv graphs (ConvInteger)
  it runs ~3x slower than fp32.
- ``static`` int8 (``quantize_static``, QDQ format): activation ranges fixed ahead of time from calibration
  data, uint8 activations and int8 weights; onnxruntime fuses QDQ pairs into QLinear kernels. Right for
  conv graphs.
- ``fp16`` (onnxconverter-common): float16 weights and arithmetic, float32 inputs and outputs; halves the
  bytes, for devices with half-precision units (no faster on the CPU execution provider).
- ``weights`` int8 (weight-only): each MatMul/Gemm/Conv weight stored int8 with per-channel scales
  behind a DequantizeLinear; onnxruntime folds those at load (the contract's SESSION_CONFIG), so the
  compute is fp32's: a quarter of the bytes at fp32's speed. onnxruntime's own 8-bit MatMulNBits was
  measured slower than fp32 here (1.3x at batch 1, 1.9x at batch 64 on the digits MLP), and covers
  MatMul only, not Gemm.

A static or dynamic variant can keep named nodes in float (``nodes_to_exclude``) and calibrate with
MinMax, Percentile or Entropy: the fallback search (search.py) walks those.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_dynamic, quantize_static

from vae_edge.runtime import contract
from vae_edge.runtime.contract import GraphSpec

from .errors import step
from .graphs import check_graph, has_conv
from .weightonly import weights_only

log = logging.getLogger(__name__)

METHODS = ("dynamic", "static", "fp16", "weights")
CALIBRATIONS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}
# Nodes whose weights the int8 methods quantize: what the search may keep in float.
QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


class QuantizeError(RuntimeError):
    """The quantizer ran but could not produce a graph (e.g. no calibration data for a static variant)."""


@dataclass(frozen=True)
class QuantizeConfig:
    """How to turn one float32 graph into a variant.

    Raises:
        ValueError: unknown method or weight type (checked on construction).
    """

    method: str = "dynamic"  # one of METHODS
    weight_type: str = "int8"  # int8 methods only: "int8" or "uint8"
    # Per-channel weight scales. Off: measured on the MLP and on a conv VAE (README) it added bytes (up
    # to +64 % on a conv decoder's big Linear) and time, for no measurable gain in accuracy.
    per_channel: bool = False
    # Static only: calibration batches fed to the quantizer at most, and samples per batch. MinMax
    # calibration needs ranges, not statistics: a few hundred samples settle them.
    calibration_batches: int = 8
    calibration_batch_size: int = 64
    calibrate: str = "minmax"  # static only: one of CALIBRATIONS
    # Node names (of the float graph) kept in float by the int8 methods: the fallback search's choice.
    nodes_to_exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown quantization method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.weight_type not in ("int8", "uint8"):
            raise ValueError(f"unsupported weight type {self.weight_type!r}; expected int8 or uint8")
        if self.calibrate not in CALIBRATIONS:
            raise ValueError(f"unknown calibration method {self.calibrate!r}; expected one of {', '.join(CALIBRATIONS)}")
        if self.calibration_batches < 1 or self.calibration_batch_size < 1:
            raise ValueError("calibration_batches and calibration_batch_size must be >= 1")

    @property
    def needs_calibration(self) -> bool:
        return self.method == "static"

    def describe(self) -> str:
        """One line for the manifest and `vae-run info`."""
        if self.method == "fp16":
            return "float16 weights and arithmetic (onnxconverter-common), float32 inputs and outputs"
        if self.method == "weights":
            return "weight-only int8: weights int8 per-channel on disk behind DequantizeLinear, folded to float32 at load; float32 compute"
        channel = " per-channel" if self.per_channel else " per-tensor"
        # Nodes kept in float are not named here: every graph of a variant states the same method (the
        # runtime checks each against the manifest); the variant's search entry lists them per graph.
        if self.method == "static":
            calibrated = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}[self.calibrate]
            return f"static QDQ quantization: weights {self.weight_type}{channel}, activations uint8 with ranges calibrated ahead of time ({calibrated})"
        return f"dynamic quantization: weights {self.weight_type}{channel}, activations uint8 at run time"


INT8 = QuantizeConfig()
INT8_STATIC = QuantizeConfig(method="static")
FP16 = QuantizeConfig(method="fp16")
INT8_WEIGHTS = QuantizeConfig(method="weights")
# Every variant an export can add to fp32, by its name in the contract. int8: MLP graphs (Gemm/MatMul);
# int8-static: conv graphs; fp16: devices with half-precision units; int8-weights: small files at fp32 speed.
VARIANTS: dict[str, QuantizeConfig] = {"int8": INT8, "int8-static": INT8_STATIC, "fp16": FP16, "int8-weights": INT8_WEIGHTS}
assert tuple(VARIANTS) == contract.VARIANTS[1:], "contract.VARIANTS names every variant an exporter writes"


def warn_dynamic_on_conv(folder: Path, specs: tuple[GraphSpec, ...], variants: Iterable[str]) -> None:
    """Log a warning when dynamic int8 is asked of conv graphs (ConvInteger is far slower than fp32)."""
    conv = {spec.name for spec in specs if has_conv(folder / spec.filename())}
    for variant in variants:
        if VARIANTS[variant].method == "dynamic" and conv:
            log.warning("%s: dynamic int8 turns the %s graph's convolutions into ConvInteger, measured 13x slower than fp32 "
                        "(docs/quantization.md); int8-static is the variant for conv graphs", variant, " and ".join(sorted(conv)))


def write_variants(folder: Path, specs: tuple[GraphSpec, ...], variants: Iterable[str], feeds: dict[str, list[dict]],
                   keep_float: dict[str, Callable[[onnx.ModelProto], list[str]]] | None = None) -> dict[str, dict]:
    """Quantize each fp32 graph in ``folder`` to each of ``variants`` as configured (no fallback search:
    the audio bundle's path; image and vector bundles go through search.py), each checked by onnx.checker.

    Args:
        feeds: calibration feeds per graph name, for the static variants.
        keep_float: per graph name, which nodes to leave in float (see :func:`quantize`).

    Returns:
        the manifest's entry per variant: its graph files and how it was made.

    Raises:
        ExportError: a quantizer or the checker failed, naming the step.
    """
    warn_dynamic_on_conv(folder, specs, variants)
    entries: dict[str, dict] = {}
    for variant in variants:
        config = VARIANTS[variant]
        for spec in specs:
            with step(f"quantizing {spec.filename()} to {variant}"):
                quantize(folder / spec.filename(), folder / spec.filename(variant), config=config, calibration=feeds[spec.name] if config.needs_calibration else None,
                         keep_float=(keep_float or {}).get(spec.name))
            with step(f"onnx.checker on {spec.filename(variant)}"):
                check_graph(folder / spec.filename(variant))
        entries[variant] = {**contract.variant_files(specs, variant), "method": config.describe()}
    return entries


def quantize(src: Path, dst: Path, *, config: QuantizeConfig = INT8, calibration: Iterable[dict[str, np.ndarray]] | None = None,
             keep_float: Callable[[onnx.ModelProto], list[str]] | None = None) -> None:
    """Write a variant of the float32 graph ``src`` to ``dst``; the graph's metadata and docstring are kept.

    onnxruntime's pre-processing (shape inference and graph optimisation) runs first for the int8
    methods, as its documentation advises.

    Args:
        config: the method and its options.
        keep_float: int8 methods only: names the nodes of the prepared graph to leave in float (e.g. an
            audio front end), besides ``config.nodes_to_exclude``.
        calibration: static only: input feeds (``{input name: array [batch, ...]}``) in the graph's own
            space, as onnxruntime's CalibrationDataReader protocol consumes them; read lazily, at most
            ``config.calibration_batches`` of them.

    Raises:
        QuantizeError: a static variant without calibration data.
    """
    src, dst = Path(src), Path(dst)
    if config.method == "fp16":
        _to_fp16(src, dst, config.nodes_to_exclude)
    elif config.method == "weights":
        weights_only(src, dst, QUANTIZABLE_OPS, exclude=config.nodes_to_exclude)
    else:
        with tempfile.TemporaryDirectory() as tmp, _quiet_quantizer():
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(src), str(prepared))
            exclude = list(config.nodes_to_exclude) + (keep_float(onnx.load(str(prepared))) if keep_float is not None else [])
            if config.method == "static":
                _static(prepared, dst, config, calibration, exclude)
            else:
                # Dynamic mode first rewrites each Gemm as a MatMul named "<node>_MatMul" (+ Add): excluded too.
                quantize_dynamic(str(prepared), str(dst), weight_type=_weight_type(config), per_channel=config.per_channel,
                                 nodes_to_exclude=[m for n in exclude for m in (n, f"{n}_MatMul")])
    _keep_description(src, dst, config)


def _weight_type(config: QuantizeConfig) -> QuantType:
    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[config.weight_type]


def _static(prepared: Path, dst: Path, config: QuantizeConfig, calibration: Iterable[dict[str, np.ndarray]] | None, exclude: list[str]) -> None:
    reader = IteratorReader(calibration or (), limit=config.calibration_batches)
    if not reader.has_data():
        raise QuantizeError("static quantization needs calibration data; none was given")
    quantize_static(
        str(prepared), str(dst), reader,
        quant_format=QuantFormat.QDQ,
        per_channel=config.per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=_weight_type(config),
        calibrate_method=CALIBRATIONS[config.calibrate],
        nodes_to_exclude=exclude,
        # Percentile and Entropy keep histograms of every activation; the default 2048 bins suffice for
        # graphs this small, and calibrating in memory avoids onnxruntime's temporary augmented model on disk.
    )


def quantizable_nodes(path: Path) -> list[str]:
    """Names of the nodes of the float graph at ``path`` that the int8 methods quantize (their weights
    are initializers): the candidates the fallback search may keep in float."""
    model = onnx.load(str(path), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in QUANTIZABLE_OPS and len(n.input) > 1 and n.input[1] in weights]


def prepared_nodes(src: Path, config: QuantizeConfig) -> list[str]:
    """The quantizable nodes of ``src`` by the names ``config``'s quantizer sees: the dynamic and static
    methods run onnxruntime's pre-processing first, which may fuse and rename nodes."""
    if config.method in ("fp16", "weights"):
        return quantizable_nodes(src)
    with tempfile.TemporaryDirectory() as tmp, _quiet_quantizer():
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared))
        return quantizable_nodes(prepared)


def _to_fp16(src: Path, dst: Path, exclude: tuple[str, ...] = ()) -> None:
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    # keep_io_types: Cast nodes at the boundary, so a device feeds and reads float32 as with every variant.
    # The converter warns once per weight too small for float16; the accuracy gate measures what that costs.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        half = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=list(exclude) or None)
    if caught:
        log.info("fp16: %d warnings from onnxconverter-common (e.g. %s)", len(caught), caught[0].message)
    onnx.save_model(half, str(dst))


def _keep_description(src: Path, dst: Path, config: QuantizeConfig) -> None:
    """Carry the float graph's docstrings and metadata_props (Netron shows them) over to the variant,
    plus the method, whatever the quantizer kept or dropped."""
    original = onnx.load(str(src), load_external_data=False)
    variant = onnx.load(str(dst))
    variant.doc_string = original.doc_string
    variant.graph.doc_string = original.graph.doc_string
    variant.producer_name = original.producer_name
    meta = {p.key: p.value for p in original.metadata_props}
    meta["vae_edge.variant_method"] = config.describe()
    del variant.metadata_props[:]
    for key, value in meta.items():
        entry = variant.metadata_props.add()
        entry.key, entry.value = key, value
    # onnxruntime's pre-processing declares every domain it knows (training, NCHWc, ATen, ...); a graph
    # should import only what its nodes use, so a reader or a minimal build sees what it really needs.
    used = {""} | {n.domain for n in variant.graph.node} | {n.domain for f in variant.functions for n in f.node} | {f.domain for f in variant.functions}
    kept = [o for o in variant.opset_import if o.domain in used or (o.domain == "ai.onnx" and "" in used)]
    del variant.opset_import[:]
    variant.opset_import.extend(kept)
    onnx.save_model(variant, str(dst))


class IteratorReader(CalibrationDataReader):
    """onnxruntime's CalibrationDataReader protocol (``get_next() -> dict or None``) over an iterator of
    input feeds, stopping after ``limit`` feeds."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]], *, limit: int | None = None):
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)
        self._first = next(self._feeds, None)  # looked at once, so that an empty set is caught up front
        self._limit = limit
        self.batches = 0

    def has_data(self) -> bool:
        return self._first is not None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._limit is not None and self.batches >= self._limit:
            return None
        if self._first is not None:
            feed, self._first = self._first, None
        else:
            feed = next(self._feeds, None)
        if feed is not None:
            self.batches += 1
        return feed


@contextlib.contextmanager
def _quiet_quantizer():
    # The quantizer logs advice through the root logger at WARNING; keep a user's console for our report.
    # Its Percentile and Entropy calibrators also print progress to stdout, where a CLI's output goes.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
