"""The optimisation settings of a run (the architecture is VAEConfig's, in vae_edge.models.config).

Torch-free: vae-train takes its option defaults and choices from here before torch loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEVICES = ("auto", "cpu", "cuda")
OBJECTIVES = ("iwae", "elbo")
# Gradient estimators of the IWAE bound: the bound's own, or the doubly reparameterised one (Tucker et al., 2019).
IW_GRADIENTS = ("standard", "dreg")
LR_SCHEDULES = ("cosine", "constant")
# The cosine schedule ends at this fraction of lr, not at 0: the last epochs still move the weights.
LR_FLOOR = 0.01


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; vae-train's options of the same names default to these values, which were
    chosen by measurement on a held-out digits split, three seeds (docs/training.md, "Choosing the defaults").

    Raises:
        ValueError: when a field is out of range (checked on construction).
    """

    # A ceiling: early stopping (patience) may end the run before it, keeping the best epoch.
    epochs: int = 300
    batch_size: int = 64  # per process: under torchrun one step sees world_size * batch_size samples
    lr: float = 6e-3
    # Decoupled weight decay (torch.optim.AdamW: each step shrinks the weights by lr * weight_decay);
    # 0: plain Adam, no decay.
    weight_decay: float = 0.0
    # One of LR_SCHEDULES. cosine: from lr down to LR_FLOOR * lr over ``epochs``; constant: lr throughout.
    lr_schedule: str = "cosine"
    # One of OBJECTIVES. "iwae": the importance-weighted bound with ``iw_train`` samples (Burda et al., 2016),
    # tighter than the ELBO and a better test likelihood; "elbo": the single-sample ELBO (beta, kl_warmup apply).
    objective: str = "iwae"
    iw_train: int = 10
    # K of the validation bound that early stopping watches (objective "iwae"; at least iw_train). Not
    # iw_train itself: as training goes on, q(z|x) widens and the K = 10 bound falls while the likelihood
    # (K = 1000) still rises, so stopping on it keeps an epoch too early (docs/training.md, third round (c)).
    iw_val: int = 100
    # One of IW_GRADIENTS (objective "iwae"): how the encoder's gradient of the bound is estimated.
    iw_gradient: str = "dreg"
    beta: float = 1.0
    # KL weight ramps linearly from 0 to beta over this many epochs (0: no warm-up); avoids early posterior collapse.
    kl_warmup: float = 0.0
    seed: int = 0
    device: str = "auto"  # one of DEVICES; "auto": CUDA when present, else CPU
    iw_samples: int = 1000  # K of the importance-weighted NLL estimate at the end
    # Stop after this many epochs without a better validation bound and keep the best weights (0: never stop early).
    patience: int = 100
    # Decay of an exponential moving average of the weights (trainer/averaging.py), updated every step; the
    # average is what validation measures, early stopping keeps and model.pt serves. 0: no average, the raw weights.
    ema: float = 0.998
    quiet: bool = False  # no progress report on stderr

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        for name in ("beta", "kl_warmup", "weight_decay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.iw_samples < 1:
            raise ValueError("iw_samples must be >= 1")
        if not (0 <= self.ema < 1):
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if self.patience < 0:
            raise ValueError("patience must be >= 0")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.iw_gradient not in IW_GRADIENTS:
            raise ValueError(f"iw_gradient must be one of {', '.join(IW_GRADIENTS)}, got {self.iw_gradient!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.iw_train < 1 or self.iw_val < 1:
            raise ValueError("iw_train and iw_val must be >= 1")
        if self.objective == "iwae" and (self.beta != 1.0 or self.kl_warmup):
            raise ValueError("beta and kl_warmup weight the ELBO's KL term, which the iwae objective does not have; use objective 'elbo'")
        if self.device not in DEVICES:
            raise ValueError(f"device must be {', '.join(DEVICES[:-1])} or {DEVICES[-1]}, got {self.device!r}")

    @property
    def train_samples(self) -> int:
        """K of the training bound; 1 is the ELBO."""
        return self.iw_train if self.objective == "iwae" else 1

    @property
    def val_samples(self) -> int:
        """K of the validation bound that early stopping watches: 1 (the ELBO) for objective "elbo"."""
        return max(self.iw_train, self.iw_val) if self.objective == "iwae" else 1

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (0-based): a function of the epoch alone, so --resume needs no scheduler state."""
        if self.lr_schedule == "constant" or self.epochs <= 1:
            return self.lr
        floor = LR_FLOOR * self.lr
        return floor + (self.lr - floor) * 0.5 * (1 + math.cos(math.pi * epoch / (self.epochs - 1)))


# vae-train's data-size rule (size_settings): with fewer training samples than this, the options a user
# leaves out take SMALL_DATA's values instead of the defaults above, which were chosen on the digits'
# 1,437 training images and overfit tables of a few hundred rows (docs/training.md, "Small data").
SMALL_DATA_SAMPLES = 1000
# By vae-train option name. Measured (docs/anomaly.md, "Peers side by side"): ROC AUC of the negative
# ELBO on held-out anomalies, breast cancer (200 training rows of 30 features) and one-digit sets
# (about 100 training images).
SMALL_DATA: dict = {"hidden": (), "latent": 4, "objective": "elbo", "lr": 1e-2, "batch_size": 32, "epochs": 300, "patience": 0,
              "ema": 0.0}  # measured without the weight average (--ema), which the digits-size defaults add
SMALL_DATA_ARCHS = ("mlp",)  # measured on the MLP only: conv and conv1d keep the defaults

# VampPrior (--prior vamp): pseudo-inputs of the mixture, measured on the digits (docs/training.md, fourth round).
DEFAULT_PRIOR_COMPONENTS = 30


def auto_prior(arch: str, likelihood: str, n_train: int) -> tuple[str, str]:
    """vae-train's --prior auto: the VampPrior where it was measured to pay (an MLP on Bernoulli data of
    digits size), N(0, I) elsewhere. Returns (prior, why)."""
    if arch == "mlp" and likelihood == "bernoulli" and n_train >= SMALL_DATA_SAMPLES:
        return "vamp", f"auto, an MLP on Bernoulli data with {n_train} training samples (>= {SMALL_DATA_SAMPLES}): the VampPrior, measured better on the digits"
    why = f"{n_train} training samples (< {SMALL_DATA_SAMPLES})" if n_train < SMALL_DATA_SAMPLES else f"--arch {arch}" if arch != "mlp" else f"{likelihood} data"
    return "standard", f"auto, N(0, I) for {why}: the VampPrior is measured for MLPs on Bernoulli data of digits size only"


def size_settings(n_train: int, arch: str) -> tuple[dict, str]:
    """The settings, by vae-train option name, that the options left out take for a training split of
    ``n_train`` samples, and why. Options given on the command line are not the rule's to change.

    Returns:
        ({} : the defaults, or SMALL_DATA's values for a small MLP run), reason
    """
    if n_train >= SMALL_DATA_SAMPLES:
        return {}, f"the defaults, because {n_train} training samples (>= {SMALL_DATA_SAMPLES})"
    if arch not in SMALL_DATA_ARCHS:
        return {}, f"the defaults: {n_train} training samples (< {SMALL_DATA_SAMPLES}), but the small-data settings are measured for --arch mlp only"
    return dict(SMALL_DATA), f"small-data settings, because {n_train} training samples (< {SMALL_DATA_SAMPLES})"
