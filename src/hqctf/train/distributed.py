"""Process-group set-up for ``torchrun`` (DistributedDataParallel: gloo on CPU, NCCL on GPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place in the run: rank 0 alone writes files."""

    rank: int
    size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def setup(device: str = "auto") -> World:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1), pick the device.

    Args:
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but no CUDA device is available")
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return World(rank, size, torch.device("cuda", local_rank))
    return World(rank, size, torch.device("cpu"))


def teardown() -> None:
    """Leave the process group if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def all_mean(value: float, world: World) -> float:
    """Mean of a float over all processes (the value itself in a single process)."""
    if world.size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / world.size


def broadcast(value: Any, world: World) -> Any:
    """Rank 0's ``value`` on every process (pickled; for small objects such as a metrics dict)."""
    if world.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
