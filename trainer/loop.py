"""The training loop: Adam on the negative ELBO, seeded and reproducible, evaluated by ELBO and IWAE."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from vae_edge.models import VAE, VAEConfig, build_model

from . import objectives
from .data import Dataset

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training could not produce a usable model (e.g. the loss became NaN)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the architecture is in VAEConfig)."""

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    beta: float = 1.0
    # KL weight ramps linearly from 0 to beta over this many epochs (0: no warm-up); avoids early posterior collapse.
    kl_warmup: float = 0.0
    seed: int = 0
    device: str = "cpu"
    iw_samples: int = 1000  # K of the importance-weighted NLL estimate at the end
    quiet: bool = False

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


@dataclass
class TrainResult:
    model: VAE
    optimizer: torch.optim.Optimizer
    metrics: dict
    history: list[dict] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when present, else CPU.

    Raises:
        ValueError: "cuda" asked for on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available on this machine")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


@torch.no_grad()
def evaluate(model: VAE, x: torch.Tensor, *, seed: int = 0, batch_size: int = 1024) -> dict:
    """Mean ELBO terms per sample (nats) with one seeded z per sample: comparable across epochs."""
    model.eval()
    g = torch.Generator(device=x.device).manual_seed(seed)
    nll_sum = kl_sum = 0.0
    for xb in x.split(batch_size):
        nll, kl = objectives.elbo_terms(model, xb, generator=g)
        nll_sum += nll.sum().item()
        kl_sum += kl.sum().item()
    n = len(x)
    return {"elbo": -(nll_sum + kl_sum) / n, "nll": nll_sum / n, "kl": kl_sum / n}


@torch.no_grad()
def evaluate_iwae(model: VAE, x: torch.Tensor, k: int, *, seed: int = 0, batch_size: int = 64) -> float:
    """Mean importance-weighted NLL estimate (nats per sample) with K samples."""
    model.eval()
    g = torch.Generator(device=x.device).manual_seed(seed)
    total = sum(objectives.iwae_nll(model, xb, k, generator=g).sum().item() for xb in x.split(batch_size))
    return total / len(x)


def train(model_config: VAEConfig, data: Dataset, config: TrainConfig) -> TrainResult:
    """Train a fresh VAE on ``data`` and evaluate it.

    Returns:
        the model (eval mode, CPU), its optimizer, final metrics and one history row per epoch.

    Raises:
        ValueError: ``data`` was preprocessed for another likelihood.
        TrainingError: the loss became NaN or Inf.
    """
    if data.likelihood != model_config.likelihood:
        raise ValueError(f"the data were preprocessed for a {data.likelihood} model, this one is {model_config.likelihood}")
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = build_model(model_config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train_x = torch.from_numpy(data.to_model(data.train)).to(device)
    val_x = torch.from_numpy(data.to_model(data.val)).to(device)
    test_x = torch.from_numpy(data.to_model(data.test)).to(device)
    shuffle = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)

    history: list[dict] = []
    epochs = _progress(range(config.epochs), config)
    for epoch in epochs:
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(train_x), generator=shuffle).to(device)
        totals = np.zeros(2)
        for step, idx in enumerate(order.split(config.batch_size)):
            beta = _beta(config, epoch + step / steps_per_epoch)
            loss, nll, kl = objectives.loss(model, train_x[idx], beta=beta)
            if not torch.isfinite(loss):
                raise TrainingError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; try a lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            totals += (nll.item() * len(idx), kl.item() * len(idx))
        row = {
            "epoch": epoch + 1,
            "train_elbo": float(-totals.sum() / len(train_x)),
            "val_elbo": evaluate(model, val_x)["elbo"],
            "beta": _beta(config, epoch + 1),
            "seconds": float(time.perf_counter() - started),
        }
        history.append(row)
        if hasattr(epochs, "set_postfix"):
            epochs.set_postfix(train_elbo=f"{row['train_elbo']:.2f}", val_elbo=f"{row['val_elbo']:.2f}", refresh=False)

    model.eval()
    test = evaluate(model, test_x)
    metrics = {
        "epochs": config.epochs,
        "train_elbo": evaluate(model, train_x)["elbo"],
        "val_elbo": history[-1]["val_elbo"],
        "test_elbo": test["elbo"],
        "test_recon_nll": test["nll"],
        "test_kl": test["kl"],
        "test_iwae_nll": evaluate_iwae(model, test_x, config.iw_samples),
        "iw_samples": config.iw_samples,
        "epoch_seconds": float(np.median([r["seconds"] for r in history])),
        "device": str(device),
    }
    return TrainResult(model.cpu().eval(), optimizer, metrics, history)


def train_state(config: TrainConfig, result: TrainResult) -> dict:
    """What model.pt keeps of the run besides weights and optimizer: settings and per-epoch history."""
    return {"epoch": result.metrics["epochs"], "train_config": asdict(config), "history": result.history}


def _beta(config: TrainConfig, progress_epochs: float) -> float:
    if config.kl_warmup <= 0:
        return config.beta
    return config.beta * min(1.0, progress_epochs / config.kl_warmup)


def _progress(it, config: TrainConfig):
    if config.quiet:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc="epochs", unit="epoch", leave=True, dynamic_ncols=True, mininterval=0.5)
