"""The optimisation settings of a run (the architecture is VAEConfig's, in vae_edge.models.config).

Torch-free: vae-train takes its option defaults and choices from here before torch loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; vae-train's options of the same names default to these values.

    Raises:
        ValueError: when a field is out of range (checked on construction).
    """

    epochs: int = 100
    batch_size: int = 64  # per process: under torchrun one step sees world_size * batch_size samples
    lr: float = 1e-3
    beta: float = 1.0
    # KL weight ramps linearly from 0 to beta over this many epochs (0: no warm-up); avoids early posterior collapse.
    kl_warmup: float = 0.0
    seed: int = 0
    device: str = "auto"  # one of DEVICES; "auto": CUDA when present, else CPU
    iw_samples: int = 1000  # K of the importance-weighted NLL estimate at the end
    # Stop after this many epochs without a better validation ELBO and keep the best weights (0: never stop early).
    patience: int = 0
    quiet: bool = False  # no progress report on stderr

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        for name in ("beta", "kl_warmup"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.iw_samples < 1:
            raise ValueError("iw_samples must be >= 1")
        if self.patience < 0:
            raise ValueError("patience must be >= 0")
        if self.device not in DEVICES:
            raise ValueError(f"device must be {', '.join(DEVICES[:-1])} or {DEVICES[-1]}, got {self.device!r}")
