"""The training loop: Adam on the negative ELBO, seeded and resumable, in one process or under torchrun,
checkpointed every epoch, stopped early on the validation ELBO, evaluated by ELBO and IWAE."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DistributedSampler

from vae_edge.models import VAE, VAEConfig, build_model
from vae_edge.models.config import LEGACY_DECODER_STYLE

from . import distributed, objectives
from .checkpoint import make_checkpoint, save_checkpoint
from .curves import output_paths, write_loss_curve, write_metrics
from .data import Dataset

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training could not produce a usable model (e.g. the loss became NaN)."""


class ResumeError(ValueError):
    """The checkpoint given to --resume cannot be continued with these settings."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the architecture is in VAEConfig)."""

    epochs: int = 100
    batch_size: int = 64  # per process: under torchrun one step sees world_size * batch_size samples
    lr: float = 1e-3
    beta: float = 1.0
    # KL weight ramps linearly from 0 to beta over this many epochs (0: no warm-up); avoids early posterior collapse.
    kl_warmup: float = 0.0
    seed: int = 0
    device: str = "cpu"
    iw_samples: int = 1000  # K of the importance-weighted NLL estimate at the end
    # Stop after this many epochs without a better validation ELBO and keep the best weights (0: never stop early).
    patience: int = 0
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
        if self.patience < 0:
            raise ValueError("patience must be >= 0")


@dataclass
class TrainResult:
    model: VAE
    optimizer: torch.optim.Optimizer
    metrics: dict
    history: list[dict] = field(default_factory=list)
    # What model.pt keeps for --resume besides weights and optimizer (see ``_Run.state``).
    state: dict = field(default_factory=dict)


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


def train(
    model_config: VAEConfig,
    data: Dataset,
    config: TrainConfig,
    *,
    out: Path | None = None,
    side_outputs: bool = True,
    resume: dict | None = None,
) -> TrainResult:
    """Train a VAE on ``data`` (fresh, or continued from a checkpoint) and evaluate it on the test split.

    Under torchrun every process calls this with the same arguments: the training split is sharded by
    a DistributedSampler, gradients are averaged by DistributedDataParallel, metrics are summed over
    ranks, and rank 0 alone writes files.

    Args:
        out: model.pt to (re)write atomically after every epoch, so that a killed run leaves the last
            finished epoch; the final write adds the test metrics. None: write nothing.
        side_outputs: also write ``<stem>.metrics.json`` and ``<stem>.loss.png`` beside ``out`` every epoch.
        resume: a checkpoint dict (``models.read_checkpoint``) to continue: weights, optimizer, epoch,
            history and early-stopping state; the result equals an uninterrupted run's.

    Returns:
        the model (eval mode, CPU; the best epoch's weights when ``config.patience``), its optimizer,
        final metrics, one history row per epoch, and the resumable training state.

    Raises:
        ValueError: bad device, or ``data`` preprocessed for another likelihood.
        TrainingError: the loss became NaN or Inf (the checkpoint of the last finished epoch is kept).
        ResumeError: ``resume`` does not fit these settings or has nothing left to train.
        OSError: ``out`` cannot be written.
    """
    if data.likelihood != model_config.likelihood:
        raise ValueError(f"the data were preprocessed for a {data.likelihood} model, this one is {model_config.likelihood}")
    ctx = distributed.start(resolve_device(config.device))
    try:
        return _train(model_config, data, config, ctx, out if ctx.is_main else None, side_outputs, resume)
    finally:
        distributed.stop(ctx)


def _train(model_config, data, config, ctx, out, side_outputs, resume) -> TrainResult:
    torch.manual_seed(config.seed)
    model = build_model(model_config).to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    run = _restore(resume, model, optimizer, model_config, data, config) if resume is not None else _Run()
    train_x = torch.from_numpy(data.to_model(data.train)).to(ctx.device)
    val_x = ctx.shard(torch.from_numpy(data.to_model(data.val)).to(ctx.device))
    step = ctx.wrap(_Objective(model))
    # One process is world 1: the sampler then shuffles with a generator seeded by seed + epoch.
    sampler = DistributedSampler(range(len(train_x)), num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=config.seed)

    epochs = _progress(range(run.epoch, config.epochs), config, ctx, desc="epochs", unit="epoch", initial=run.epoch, total=config.epochs)
    for epoch in epochs:
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        train_elbo = _train_epoch(step, optimizer, train_x, list(sampler), epoch, config, ctx)
        row = {
            "epoch": epoch + 1,
            "train_elbo": train_elbo,
            "val_elbo": _evaluate(ctx, model, val_x)["elbo"],
            "beta": _beta(config, epoch + 1),
            "seconds": float(time.perf_counter() - started),
        }
        run.record(row, model, keep_best=config.patience > 0)
        if hasattr(epochs, "set_postfix"):
            epochs.set_postfix(train_elbo=f"{row['train_elbo']:.2f}", val_elbo=f"{row['val_elbo']:.2f}", refresh=False)
        if config.patience and run.stale >= config.patience:
            run.stopped_early = True
            log.info("no better validation ELBO for %d epochs: stopping at epoch %d, keeping epoch %d", run.stale, run.epoch, run.best_epoch)
        if out is not None:
            _save(out, side_outputs, model, optimizer, data, config, run, _epoch_metrics(run, ctx))
        if run.stopped_early:
            break

    if not ctx.in_sync(model):
        raise TrainingError("the processes ended with different weights; distributed training is broken here")
    state = run.state(config, model)
    if run.best_weights is not None:
        model.load_state_dict(run.best_weights)
    metrics = _final_metrics(model, data, config, ctx, run)
    if out is not None:
        _save(out, side_outputs, model, optimizer, data, config, run, metrics, state=state)
    return TrainResult(model.cpu().eval(), optimizer, metrics, run.history, state)


class _Objective(nn.Module):
    """The training loss as a module's forward: DistributedDataParallel syncs gradients only for
    computations that go through the forward of the module it wraps."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, beta: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return objectives.loss(self.vae, x, beta=beta, generator=generator)


def _train_epoch(step: nn.Module, optimizer, train_x: torch.Tensor, indices: list[int], epoch: int, config: TrainConfig, ctx) -> float:
    """One pass over this rank's share of the training split; returns the train ELBO (all ranks)."""
    # The noise of epoch e depends only on (seed, e, rank), so a resumed run draws what an uninterrupted one would.
    noise = torch.Generator(device=ctx.device).manual_seed(_derive_seed(config.seed, epoch, ctx.rank))
    order = torch.tensor(indices, device=ctx.device)
    batches = order.split(config.batch_size)
    step.train()
    totals = np.zeros(2)
    for i, idx in enumerate(_progress(batches, config, ctx, desc=f"epoch {epoch + 1}", unit="batch", leave=False)):
        loss, nll, kl = step(train_x[idx], _beta(config, epoch + i / len(batches)), noise)
        finite = bool(torch.isfinite(loss))
        if ctx.sum([0.0 if finite else 1.0])[0]:  # every rank stops together, so none waits for the others
            value = "non-finite in another process" if finite else loss.item()
            raise TrainingError(f"loss became {value} at epoch {epoch + 1}, step {i + 1}; stopped, the checkpoint of the last finished epoch is kept; try a lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        totals += (nll.item() * len(idx), kl.item() * len(idx))
    nll_sum, kl_sum, n = ctx.sum([*totals, len(indices)])
    return float(-(nll_sum + kl_sum) / n)


@dataclass
class _Run:
    """Progress of a run: what --resume restores and early stopping decides on."""

    epoch: int = 0  # epochs finished
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_elbo: float = -math.inf
    best_weights: dict | None = None  # CPU copy, kept only with early stopping
    stale: int = 0  # epochs since the best one
    stopped_early: bool = False

    def record(self, row: dict, model: VAE, *, keep_best: bool) -> None:
        self.epoch = row["epoch"]
        self.history.append(row)
        if row["val_elbo"] > self.best_val_elbo:
            self.best_epoch, self.best_val_elbo, self.stale = row["epoch"], row["val_elbo"], 0
            if keep_best:
                self.best_weights = _cpu_copy(model.state_dict())
        else:
            self.stale += 1

    def weights(self, model: VAE) -> dict:
        """The weights model.pt serves: the best epoch's under early stopping, else the latest."""
        return self.best_weights if self.best_weights is not None else _cpu_copy(model.state_dict())

    def state(self, config: TrainConfig, model: VAE) -> dict:
        """model.pt's ``train_state``: plain data and tensors only (``torch.load(weights_only=True)``)."""
        state = {
            "epoch": self.epoch,
            "train_config": asdict(config),
            "history": list(self.history),
            "best_epoch": self.best_epoch,
            "best_val_elbo": self.best_val_elbo,
            "epochs_without_improvement": self.stale,
            "stopped_early": self.stopped_early,
            "rng": {"torch": torch.get_rng_state()},
        }
        if torch.cuda.is_available() and next(model.parameters()).is_cuda:
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        if self.best_weights is not None and self.best_epoch != self.epoch:
            state["last_state_dict"] = _cpu_copy(model.state_dict())  # where --resume continues from
        return state


# Settings that must not change between an interrupted run and its continuation.
_RESUME_FIXED = ("batch_size", "lr", "beta", "kl_warmup", "seed", "patience")


def _restore(ckpt: dict, model: VAE, optimizer, model_config: VAEConfig, data: Dataset, config: TrainConfig) -> _Run:
    ts = ckpt.get("train_state") or {}
    if "epoch" not in ts or "history" not in ts or not ckpt.get("optimizer"):
        raise ResumeError("the checkpoint holds no training state to resume (optimizer, epoch)")
    if ts.get("stopped_early"):
        raise ResumeError(f"training stopped early at epoch {ts['epoch']} (best epoch {ts.get('best_epoch')}); there is nothing to resume")
    if ts["epoch"] >= config.epochs:
        raise ResumeError(f"the checkpoint has trained {ts['epoch']} epochs already; ask for more with --epochs")
    saved = VAEConfig.from_dict(dict(ckpt["config"])).to_dict()
    differ = [f"{k} ({saved[k]} -> {v})" for k, v in model_config.to_dict().items() if saved.get(k) != v]
    if differ:
        raise ResumeError(f"the model settings differ from the checkpoint's: {', '.join(differ)}")
    recorded = ckpt.get("data") or {}
    if recorded.get("spec") != data.spec or list(recorded.get("shape", [])) != list(data.shape):
        raise ResumeError(f"the checkpoint was trained on {recorded.get('spec')!r} {recorded.get('shape')}, not {data.spec!r} {list(data.shape)}")
    before = ts.get("train_config") or {}
    changed = [f"{k} ({before.get(k)} -> {getattr(config, k)})" for k in _RESUME_FIXED if k in before and before[k] != getattr(config, k)]
    if changed:
        raise ResumeError(f"cannot change {', '.join(changed)} when resuming")
    model.load_state_dict(ts.get("last_state_dict") or ckpt["state_dict"])
    optimizer.load_state_dict(ckpt["optimizer"])
    rng = ts.get("rng") or {}
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and next(model.parameters()).is_cuda:
        torch.cuda.set_rng_state_all(rng["cuda"])
    run = _Run(
        epoch=int(ts["epoch"]),
        history=list(ts["history"]),
        best_epoch=int(ts.get("best_epoch", 0)),
        best_val_elbo=float(ts.get("best_val_elbo", -math.inf)),
        stale=int(ts.get("epochs_without_improvement", 0)),
    )
    if config.patience and run.best_epoch:
        run.best_weights = _cpu_copy(ckpt["state_dict"])  # with patience, state_dict holds the best epoch
    log.info("resuming after epoch %d of %d", run.epoch, config.epochs)
    return run


def _save(out: Path, side_outputs: bool, model, optimizer, data: Dataset, config: TrainConfig, run: _Run, metrics: dict, *, state: dict | None = None) -> None:
    """model.pt first (atomically), then the metrics file and the loss curve beside it."""
    state = state if state is not None else run.state(config, model)
    ckpt = make_checkpoint(model, data=data.describe(), metrics=metrics, optimizer=optimizer, train_state=state, weights=run.weights(model))
    save_checkpoint(out, ckpt)
    if side_outputs:
        metrics_path, curve_path = output_paths(out)
        write_metrics(metrics_path, history=run.history, metrics=metrics)
        write_loss_curve(curve_path, run.history)


def _epoch_metrics(run: _Run, ctx) -> dict:
    last = run.history[-1]
    return {
        "epochs": run.epoch,
        "train_elbo": last["train_elbo"],
        "val_elbo": last["val_elbo"],
        "best_epoch": run.best_epoch,
        "best_val_elbo": run.best_val_elbo,
        "epoch_seconds": float(np.median([r["seconds"] for r in run.history])),
        "device": str(ctx.device),
        "world_size": ctx.world,
    }


def _final_metrics(model: VAE, data: Dataset, config: TrainConfig, ctx, run: _Run) -> dict:
    """Train/val/test ELBO and the test IWAE NLL of the weights being kept, per sample in nats."""
    model.eval()
    split = {name: ctx.shard(torch.from_numpy(data.to_model(getattr(data, name))).to(ctx.device)) for name in ("train", "val", "test")}
    test = _evaluate(ctx, model, split["test"])
    return {
        "epochs": run.epoch,
        "train_elbo": _evaluate(ctx, model, split["train"])["elbo"],
        "val_elbo": _evaluate(ctx, model, split["val"])["elbo"],
        "test_elbo": test["elbo"],
        "test_recon_nll": test["nll"],
        "test_kl": test["kl"],
        "test_iwae_nll": _evaluate_iwae(ctx, model, split["test"], config.iw_samples),
        "iw_samples": config.iw_samples,
        "best_epoch": run.best_epoch if config.patience else run.epoch,
        "stopped_early": run.stopped_early,
        "epoch_seconds": float(np.median([r["seconds"] for r in run.history])),
        "device": str(ctx.device),
        "world_size": ctx.world,
    }


def _evaluate(ctx, model: VAE, shard: torch.Tensor) -> dict:
    """:func:`evaluate` over every rank's shard, summed: the same figures as one process would give."""
    means = evaluate(model, shard) if len(shard) else {"elbo": 0.0, "nll": 0.0, "kl": 0.0}
    elbo, nll, kl, n = ctx.sum([means["elbo"] * len(shard), means["nll"] * len(shard), means["kl"] * len(shard), len(shard)])
    return {"elbo": elbo / n, "nll": nll / n, "kl": kl / n}


def _evaluate_iwae(ctx, model: VAE, shard: torch.Tensor, k: int) -> float:
    mean = evaluate_iwae(model, shard, k) if len(shard) else 0.0
    total, n = ctx.sum([mean * len(shard), len(shard)])
    return total / n


def resume_settings(ckpt: dict) -> dict:
    """The settings a checkpoint was trained with, by vae-train option name, for --resume to default to.

    Returns:
        e.g. {"data_spec": "digits", "latent": 8, "hidden": (400,), "lr": 0.001, "epochs": 100, ...};
        only what the checkpoint records.
    """
    config = ckpt.get("config") or {}
    train_config = (ckpt.get("train_state") or {}).get("train_config") or {}
    data = ckpt.get("data") or {}
    settings = {k: train_config[k] for k in ("epochs", "batch_size", "lr", "beta", "kl_warmup", "seed", "iw_samples", "patience") if k in train_config}
    settings.update({
        "latent": config.get("latent_dim"), "hidden": tuple(config.get("hidden_dims", ())), "arch": config.get("arch"),
        "likelihood": config.get("likelihood"), "gaussian_std": config.get("gaussian_std"),
        "channels": tuple(config.get("channels", ())), "decoder_style": config.get("decoder_style", LEGACY_DECODER_STYLE if config else None),
    })
    if "spec" in data:
        settings["data_spec"] = data["spec"]
    return {k: v for k, v in settings.items() if v not in (None, ())}


def _derive_seed(*parts: int) -> int:
    """A 63-bit seed for one (seed, epoch, rank) stream, independent of the others."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _cpu_copy(state_dict: dict) -> dict:
    return {k: v.detach().cpu().clone() for k, v in state_dict.items()}


def _beta(config: TrainConfig, progress_epochs: float) -> float:
    if config.kl_warmup <= 0:
        return config.beta
    return config.beta * min(1.0, progress_epochs / config.kl_warmup)


def _progress(it, config: TrainConfig, ctx, **kwargs):
    """A tqdm bar around ``it`` on the main process unless quiet."""
    if config.quiet or not ctx.is_main:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, dynamic_ncols=True, mininterval=0.5, **kwargs)
