"""Evaluation: mean ELBO terms and the importance-weighted NLL, per sample in nats, in one process or
summed over every torchrun process's shard (the same figures as one process would give)."""

from __future__ import annotations

import numpy as np
import torch

from vae_edge.models import VAE

from . import objectives
from .config import TrainConfig
from .data import Dataset


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


def evaluate_shards(ctx, model: VAE, shard: torch.Tensor) -> dict:
    """:func:`evaluate` over every rank's shard, summed over ranks."""
    means = evaluate(model, shard) if len(shard) else {"elbo": 0.0, "nll": 0.0, "kl": 0.0}
    elbo, nll, kl, n = ctx.sum([means["elbo"] * len(shard), means["nll"] * len(shard), means["kl"] * len(shard), len(shard)])
    return {"elbo": elbo / n, "nll": nll / n, "kl": kl / n}


def evaluate_iwae_shards(ctx, model: VAE, shard: torch.Tensor, k: int) -> float:
    """:func:`evaluate_iwae` over every rank's shard, summed over ranks."""
    mean = evaluate_iwae(model, shard, k) if len(shard) else 0.0
    total, n = ctx.sum([mean * len(shard), len(shard)])
    return total / n


def epoch_metrics(run, ctx) -> dict:
    """model.pt's ``metrics`` while training: the latest epoch's figures (``run``: a ``resume.Run``)."""
    last = run.history[-1]
    return {
        "epochs": run.epoch,
        "train_elbo": last["train_elbo"],
        "val_elbo": last["val_elbo"],
        "best_epoch": run.best_epoch,
        "best_val_bound": run.best_val_bound,
        "epoch_seconds": float(np.median([r["seconds"] for r in run.history])),
        "device": str(ctx.device),
        "world_size": ctx.world,
    }


def final_metrics(model: VAE, data: Dataset, config: TrainConfig, ctx, run) -> dict:
    """Train/val/test ELBO and the test IWAE NLL of the weights being kept, per sample in nats; the test
    figures are None when there is no test split (``test_samples`` 0), not figures computed on nothing."""
    model.eval()
    split = {name: ctx.shard(torch.from_numpy(data.to_model(getattr(data, name))).to(ctx.device)) for name in ("train", "val", "test")}
    has_test = len(data.test) > 0
    test = evaluate_shards(ctx, model, split["test"]) if has_test else {"elbo": None, "nll": None, "kl": None}
    return {
        "epochs": run.epoch,
        "train_elbo": evaluate_shards(ctx, model, split["train"])["elbo"],
        "val_elbo": evaluate_shards(ctx, model, split["val"])["elbo"],
        "test_samples": len(data.test),
        "test_elbo": test["elbo"],
        "test_recon_nll": test["nll"],
        "test_kl": test["kl"],
        "test_iwae_nll": evaluate_iwae_shards(ctx, model, split["test"], config.iw_samples) if has_test else None,
        "iw_samples": config.iw_samples,
        "best_epoch": run.best_epoch if config.patience else run.epoch,
        "stopped_early": run.stopped_early,
        "epoch_seconds": float(np.median([r["seconds"] for r in run.history])),
        "device": str(ctx.device),
        "world_size": ctx.world,
    }
