"""What `vae-export` is asked to do: ExportOptions, in a module that imports no torch or onnx, so that
the command reads its option defaults from the dataclass it fills (export/cli.py) and the two cannot
drift apart, as vae-train's options come from VAEConfig and TrainConfig."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vae_edge.runtime import contract
from vae_edge.runtime.benchmark import Effort

if TYPE_CHECKING:
    from .latency import LatencyConfig

AUTO = contract.AUTO  # --quantize auto: every method, and the recommended variant per graph
DEFAULT_OPSET = 18
# torch.onnx's dynamo exporter writes opset 18 or newer (asked for less, it warns and writes 18).
OPSETS = range(18, 24)
DEFAULT_BUDGET_S = 60.0  # the fallback search's seconds per variant (search.py)


def _latency() -> LatencyConfig:
    from .latency import LatencyConfig

    return LatencyConfig()


def _recommend_effort() -> Effort:
    from .recommend import EFFORT

    return EFFORT


@dataclass(frozen=True)
class ExportOptions:
    """What to write and how strict to be."""

    variants: tuple[str, ...] = (AUTO,)  # or quantized variants to add to fp32; () for fp32 alone
    opset: int = DEFAULT_OPSET
    # Largest relative change in reconstruction NLL that a quantized variant may show against PyTorch.
    tolerance: float = 0.02
    allow_degraded: bool = False  # write the bundle even if a quantized variant misses its gate
    fp32_atol: float = 1e-4
    score_rtol: float = 1e-4  # runtime anomaly score vs PyTorch negative ELBO, fp32
    ort: bool = False  # also write every graph in ORT format, plus required_operators.config
    # The fused score graph per variant (one session call per anomaly score; it roughly doubles each
    # variant's bytes, docs/bundle.md). False: a bundle as before it, scored with the encoder and decoder.
    score_graph: bool = True
    calibration: str | None = None  # data SPEC for static variants; None: the training data in model.pt
    # Data that moved since training: specs replacing the training, validation and test data recorded in
    # model.pt (None: the recorded ones, at their absolute path or, when they moved with it, beside model.pt).
    data: str | None = None
    val_data: str | None = None
    test_data: str | None = None
    # How to time each variant for the manifest; None: not timed (a byte-stable bundle, `make bundle`).
    latency: LatencyConfig | None = field(default_factory=_latency)
    search: bool = True  # a variant that misses its gate is searched for one that holds (search.py)
    search_budget_s: float = DEFAULT_BUDGET_S  # per variant
    recommend_effort: Effort = field(default_factory=_recommend_effort)  # how long auto times each graph candidate

    @property
    def auto(self) -> bool:
        return self.variants == (AUTO,)

    @property
    def methods(self) -> tuple[str, ...]:
        """The variants to build: every one for auto."""
        return contract.VARIANTS[1:] if self.auto else self.variants

    def __post_init__(self) -> None:
        if AUTO in self.variants and not self.auto:
            raise ValueError(f"--quantize {AUTO} builds every variant; it is not combined with others ({', '.join(self.variants)})")
        # finite: the manifest records both, and JSON has no Infinity (JavaScript's JSON.parse refuses it)
        if not 0 <= self.search_budget_s < math.inf:
            raise ValueError(f"search budget must be a finite number of seconds >= 0, got {self.search_budget_s}")
        unknown = [v for v in self.variants if v not in contract.VARIANTS[1:] and v != AUTO]
        if unknown:
            raise ValueError(f"unknown quantization {', '.join(unknown)}; expected {AUTO}, or some of: {', '.join(contract.VARIANTS[1:])}")
        if self.opset not in OPSETS:
            raise ValueError(f"opset must be between {OPSETS.start} and {OPSETS.stop - 1}, got {self.opset}")
        if not 0 <= self.tolerance < math.inf:
            raise ValueError(f"tolerance must be a finite number >= 0, got {self.tolerance}")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"quantization listed twice: {', '.join(self.variants)}")
        if self.calibration is not None:
            from .quantize import VARIANTS  # onnx and onnxruntime's quantizer: only when asked

            if not any(VARIANTS[v].needs_calibration for v in self.methods):
                raise ValueError("--calibration is used by int8-static only; add it to --quantize or drop --calibration")
