"""The training loop: Adam (AdamW with weight decay) on the importance-weighted bound (or the ELBO) along a cosine learning rate,
seeded and resumable, in one process or under torchrun, checkpointed every epoch, stopped early on the
validation bound, evaluated by ELBO and IWAE at the end.

Its parts live beside it: settings in config.py, evaluation in evaluation.py, the resumable state in
resume.py, progress reporting in progress.py.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DistributedSampler

from vae_edge.models import VAE, VAEConfig, build_model, make_checkpoint, save_checkpoint

from . import distributed, objectives
from .averaging import WeightAverage
from .config import DEVICES, TrainConfig
from .curves import write_side_outputs
from .data import Dataset
from .evaluation import epoch_metrics, evaluate_iwae_shards, evaluate_shards, final_metrics
from .progress import Progress
from .resume import Run, restore


class TrainingError(RuntimeError):
    """Training could not produce a usable model (e.g. the loss became NaN)."""


@dataclass
class TrainResult:
    model: VAE
    optimizer: torch.optim.Optimizer
    metrics: dict
    history: list[dict] = field(default_factory=list)
    # What model.pt keeps for --resume besides weights and optimizer (see ``resume.Run.state``).
    state: dict = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when present, else CPU.

    Raises:
        ValueError: "cuda" asked for on a machine without it, or a name not in ``config.DEVICES``.
    """
    if name not in DEVICES:
        raise ValueError(f"device must be {', '.join(DEVICES[:-1])} or {DEVICES[-1]}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available on this machine")
    return torch.device(name)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam, or AdamW (decoupled decay of every parameter) when ``config.weight_decay`` > 0; the rate
    is set per epoch by the loop (``config.lr_at``)."""
    if config.weight_decay:
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr)


def train(
    model_config: VAEConfig,
    data: Dataset,
    config: TrainConfig,
    *,
    out: Path | None = None,
    side_outputs: bool = True,
    resume: dict | None = None,
    tensorboard: Path | None = None,
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
        tensorboard: a folder to log each epoch's figures to as TensorBoard events (needs the
            ``tensorboard`` package); None: no events.

    Returns:
        the model (eval mode, CPU; the best epoch's weights when ``config.patience``), its optimizer,
        final metrics, one history row per epoch, and the resumable training state.

    Raises:
        ValueError: bad device, ``data`` preprocessed for another likelihood, or ``tensorboard`` without
            the tensorboard package.
        TrainingError: the loss became NaN or Inf (the checkpoint of the last finished epoch is kept).
        ResumeError: ``resume`` does not fit these settings or has nothing left to train.
        OSError: ``out`` cannot be written.
    """
    if data.likelihood != model_config.likelihood:
        raise ValueError(f"the data were preprocessed for a {data.likelihood} model, this one is {model_config.likelihood}")
    ctx = distributed.start(resolve_device(config.device))
    events = None
    try:
        events = _EventLog(tensorboard) if tensorboard is not None and ctx.is_main else None
        return _train(model_config, data, config, ctx, out if ctx.is_main else None, side_outputs, resume, events)
    finally:
        if events is not None:
            events.close()
        distributed.stop(ctx)


class _EventLog:
    """TensorBoard scalars, one step per epoch (torch.utils.tensorboard; the tensorboard package needed)."""

    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError('--tensorboard needs the tensorboard package: pip install "vae-edge[train]" (or tensorboard)') from None
        self.writer = SummaryWriter(log_dir=str(folder))

    def epoch(self, row: dict) -> None:
        for key in ("train_elbo", "train_bound", "val_elbo", "val_bound", "lr", "seconds"):
            if key in row:
                self.writer.add_scalar(f"{'time' if key == 'seconds' else key.split('_')[0]}/{key}", row[key], row["epoch"])
        self.writer.flush()

    def final(self, metrics: dict) -> None:
        for key, value in metrics.items():
            if key.startswith(("test_", "val_", "train_")) and isinstance(value, float):
                self.writer.add_scalar(f"final/{key}", value, metrics["epochs"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _train(model_config, data, config, ctx, out, side_outputs, resume, events=None) -> TrainResult:
    torch.manual_seed(config.seed)
    model = build_model(model_config).to(ctx.device)
    if resume is None and model_config.prior == "vamp":  # the pseudo-inputs start on training samples (seeded)
        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(config.seed))
        # distinct samples while there are enough (vae-train refuses more pseudo-inputs than samples)
        picks = order[torch.arange(model_config.prior_components) % len(order)].numpy()
        model.init_prior(torch.from_numpy(data.to_model(data.train[picks])).to(ctx.device))
    optimizer = make_optimizer(model, config)
    run = restore(resume, model, optimizer, model_config, data, config) if resume is not None else Run()
    if config.ema:
        run.average = WeightAverage(model, config.ema, ((resume or {}).get("train_state") or {}).get("weight_average"))
    train_x = torch.from_numpy(data.to_model(data.train)).to(ctx.device)
    val_x = ctx.shard(torch.from_numpy(data.to_model(data.val)).to(ctx.device))
    step = ctx.wrap(_Objective(model, config.train_samples, config.iw_gradient))
    # One process is world 1: the sampler then shuffles with a generator seeded by seed + epoch.
    sampler = DistributedSampler(range(len(train_x)), num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=config.seed)

    progress = Progress(first=run.epoch, total=config.epochs, enabled=ctx.is_main and not config.quiet)
    try:
        for epoch in range(run.epoch, config.epochs):
            started = time.perf_counter()
            sampler.set_epoch(epoch)
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at(epoch)
            train_elbo, train_bound = _train_epoch(step, optimizer, train_x, list(sampler), epoch, config, ctx, progress, run.average)
            with run.average.applied(model) if run.average else nullcontext():  # validation and the best epoch's copy: of the average
                val_elbo = evaluate_shards(ctx, model, val_x)["elbo"]
                row = {
                    "epoch": epoch + 1,
                    "train_elbo": train_elbo,
                    "train_bound": train_bound,
                    "val_elbo": val_elbo,
                    # What early stopping watches: the importance-weighted bound with K = val_samples on the
                    # validation split (seeded alike every epoch, so epochs compare without sampling noise between them).
                    "val_bound": val_elbo if config.val_samples == 1 else -evaluate_iwae_shards(ctx, model, val_x, config.val_samples),
                    "lr": config.lr_at(epoch),
                    "beta": _beta(config, epoch + 1),
                    "seconds": float(time.perf_counter() - started),
                }
                run.record(row, model, keep_best=config.patience > 0)
            progress.epoch_done(row)
            if events is not None:
                events.epoch(row)
            run.check_patience(config.patience)
            if out is not None:
                _save(out, side_outputs, model, optimizer, data, config, run, epoch_metrics(run, ctx))
            if run.stopped_early:
                break
    finally:
        progress.close()

    if not ctx.in_sync(model):
        raise TrainingError("the processes ended with different weights; distributed training is broken here")
    state = run.state(config, model)
    if run.best_weights is not None or run.average is not None:
        model.load_state_dict(run.weights(model))
    metrics = final_metrics(model, data, config, ctx, run)
    if events is not None:
        events.final(metrics)
    if out is not None:
        _save(out, side_outputs, model, optimizer, data, config, run, metrics, state=state)
    return TrainResult(model.cpu().eval(), optimizer, metrics, run.history, state)


class _Objective(nn.Module):
    """The training loss as a module's forward: DistributedDataParallel syncs gradients only for
    computations that go through the forward of the module it wraps."""

    def __init__(self, vae: VAE, samples: int = 1, gradient: str = "standard"):
        super().__init__()
        self.vae = vae
        self.samples = samples  # K of the importance-weighted bound; 1: the (beta-weighted) ELBO
        self.gradient = gradient  # the IW bound's gradient estimator (objectives.iwae_loss)

    def forward(self, x: torch.Tensor, beta: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.samples > 1:
            return objectives.iwae_loss(self.vae, x, self.samples, generator=generator, gradient=self.gradient)
        return objectives.loss(self.vae, x, beta=beta, generator=generator)


def _train_epoch(step: nn.Module, optimizer, train_x: torch.Tensor, indices: list[int], epoch: int, config: TrainConfig, ctx, progress: Progress,
                 average: WeightAverage | None = None) -> tuple[float, float]:
    """One pass over this rank's share of the training split (``average`` updated after every step);
    returns the train ELBO and the bound trained on, the negative mean loss (all ranks)."""
    # The noise of epoch e depends only on (seed, e, rank), so a resumed run draws what an uninterrupted one would.
    noise = torch.Generator(device=ctx.device).manual_seed(_derive_seed(config.seed, epoch, ctx.rank))
    order = torch.tensor(indices, device=ctx.device)
    batches = order.split(config.batch_size)
    step.train()
    totals = np.zeros(3)
    for i, idx in enumerate(progress.batches(batches, epoch + 1)):
        loss, nll, kl = step(train_x[idx], _beta(config, epoch + i / len(batches)), noise)
        finite = bool(torch.isfinite(loss))
        if ctx.sum([0.0 if finite else 1.0])[0]:  # every rank stops together, so none waits for the others
            value = "non-finite in another process" if finite else loss.item()
            raise TrainingError(f"loss became {value} at epoch {epoch + 1}, step {i + 1}; stopped, the checkpoint of the last finished epoch is kept; try a lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update()
        totals += (nll.item() * len(idx), kl.item() * len(idx), loss.item() * len(idx))
    nll_sum, kl_sum, loss_sum, n = ctx.sum([*totals, len(indices)])
    return float(-(nll_sum + kl_sum) / n), float(-loss_sum / n)


def _save(out: Path, side_outputs: bool, model, optimizer, data: Dataset, config: TrainConfig, run: Run, metrics: dict, *, state: dict | None = None) -> None:
    """model.pt first (atomically), then the metrics file and the loss curve beside it."""
    final = state is not None
    state = state if final else run.state(config, model)
    ckpt = make_checkpoint(model, data=data.describe(base=out.parent), metrics=metrics, optimizer=optimizer, train_state=state, weights=run.weights(model))
    save_checkpoint(out, ckpt)
    if side_outputs:
        write_side_outputs(out, run, metrics, final=final, best_epoch=run.best_epoch if config.patience else None)


def _derive_seed(*parts: int) -> int:
    """A 63-bit seed for one (seed, epoch, rank) stream, independent of the others."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _beta(config: TrainConfig, progress_epochs: float) -> float:
    if config.kl_warmup <= 0:
        return config.beta
    return config.beta * min(1.0, progress_epochs / config.kl_warmup)
