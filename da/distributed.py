"""Multi-process data-parallel training through PyTorch's own engine.

Launch with torchrun, e.g. `torchrun --nproc_per_node=2 -m da train CONFIG ...` (several
nodes: torchrun's c10d rendezvous, `--nnodes=N --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT`).
torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them everything here is a no-op
and training is the plain single-process loop.

Contract (da.train relies on it):
- `train.batch_size` stays the GLOBAL batch per domain: each rank draws its slice of the
  same global batch, so a config means the same optimisation at any world size;
- DistributedDataParallel averages gradients over ranks (gradient reversal is per
  sample, so the reversed domain gradient is averaged like any other);
- only rank 0 touches the run folder (logs, evaluations, checkpoints); it loads a
  checkpoint and broadcasts it, so other nodes need no shared disk;
- BatchNorm statistics are per rank unless train.sync_batchnorm (CUDA only).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

# Rank 0 evaluates alone while the others wait in their next collective; a 3D evaluation
# over whole scenes can take many minutes, far past gloo's 30-minute default on a slow CPU.
TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def init_world(device_type: str) -> World:
    """Joins the process group torchrun describes (gloo on CPU, nccl on CUDA)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=TIMEOUT)
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                 dist.get_backend())


def broadcast(world: World, obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not world.active:
        return obj
    box = [obj if world.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(world: World, obj: Any) -> list[Any]:
    """[rank 0's obj, rank 1's obj, ...] on every rank."""
    if not world.active:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def any_rank(world: World, flag: bool, device: torch.device) -> bool:
    """True on every rank if it is True on one (a signal seen by one rank stops all)."""
    if not world.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_over_ranks(world: World, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Logged loss sums averaged over ranks (one all-reduce for all of them)."""
    if not world.active or not values:
        return values
    keys = sorted(values)
    t = torch.stack([values[k].float().reshape(()) for k in keys])
    dist.all_reduce(t)
    return {k: v / world.size for k, v in zip(keys, t)}


def parameter_digest(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter's bytes: equal digests = bit-identical replicas."""
    h = hashlib.sha256()
    for name, p in sorted(module.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()


def shutdown(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()


class LossModule(torch.nn.Module):
    """An Algorithm's losses as a forward(), the form DistributedDataParallel wraps."""

    def __init__(self, algorithm: torch.nn.Module):
        super().__init__()
        self.algorithm = algorithm

    def forward(self, source, target, progress: float):
        return self.algorithm.losses(source, target, progress)
