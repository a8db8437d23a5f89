"""One process or many: the torch.distributed plumbing the training loop needs, and nothing more.

Under ``torchrun --nproc_per_node=N -m vae_edge.trainer ...`` every process runs the same command;
torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, and the process group is
initialised from them (gloo on CPU, nccl on CUDA). Outside torchrun everything here is a no-op.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes files and prints."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass(frozen=True)
class Context:
    """Where this process trains: its rank among ``world`` processes and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def wrap(self, module: nn.Module) -> nn.Module:
        """DistributedDataParallel around ``module`` when distributed (gradients averaged across ranks)."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (identity in one process)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def in_sync(self, module: nn.Module) -> bool:
        """Whether every rank holds rank 0's parameters exactly (what DistributedDataParallel promises)."""
        if not self.distributed:
            return True
        flat = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
        reference = flat.clone()
        dist.broadcast(reference, src=0)
        differs = torch.tensor([float(not torch.equal(flat, reference))], device=self.device)
        dist.all_reduce(differs, op=dist.ReduceOp.MAX)
        return differs.item() == 0.0

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's share of an evaluation set (every rank a disjoint part; together all of it)."""
        return x[self.rank :: self.world] if self.distributed else x


def start(device: torch.device) -> Context:
    """Join the process group when launched by torchrun; otherwise a one-process context.

    Args:
        device: the device asked for ("cuda" becomes cuda:LOCAL_RANK under torchrun).
    """
    if not launched_by_torchrun():
        return Context(0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    ctx = Context(dist.get_rank(), dist.get_world_size(), device)
    log.info("rank %d of %d on %s", ctx.rank, ctx.world, ctx.device)
    return ctx


def stop(ctx: Context) -> None:
    """Leave the process group that :func:`start` joined."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
