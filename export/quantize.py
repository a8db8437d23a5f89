"""Quantized variants of a graph, through onnxruntime's quantizer."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic


@dataclass(frozen=True)
class QuantizeConfig:
    """How to quantize one graph.

    ``dynamic`` int8: weights are int8 ahead of time, activations are quantized to uint8 per batch at run
    time; Gemm/MatMul become MatMulInteger. Right for MLP graphs (DESIGN.md: on conv graphs it is slower).
    """

    method: str = "dynamic"
    weight_type: str = "int8"
    # Per-channel scales on the large Linear layers added bytes without measurable accuracy gain.
    per_channel: bool = False

    def describe(self) -> str:
        return f"{self.method} quantization: weights {self.weight_type}{' per-channel' if self.per_channel else ''}, activations uint8 at run time"


INT8 = QuantizeConfig()


def quantize(src: Path, dst: Path, *, config: QuantizeConfig = INT8) -> None:
    """Write a quantized copy of the graph ``src`` to ``dst``.

    onnxruntime's pre-processing (shape inference and graph optimisation) runs first, as its docs advise.

    Raises:
        ValueError: unsupported method or weight type.
    """
    if config.method != "dynamic":
        raise ValueError(f"unsupported quantization method {config.method!r}")
    weight_type = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}.get(config.weight_type)
    if weight_type is None:
        raise ValueError(f"unsupported weight type {config.weight_type!r}")
    with tempfile.TemporaryDirectory() as tmp, _quiet_quantizer():
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared))
        quantize_dynamic(str(prepared), str(dst), weight_type=weight_type, per_channel=config.per_channel)


@contextlib.contextmanager
def _quiet_quantizer():
    # The quantizer logs advice through the root logger at WARNING; keep a user's console for our report.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
