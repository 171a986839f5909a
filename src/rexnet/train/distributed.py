"""Distributed setup (torchrun: one or many nodes; NCCL on GPU, gloo on CPU) and the
global-batch sampler that makes a W-process run equal a 1-process run with W micro-batches."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as tdist
from torch.utils.data import Sampler

__all__ = ["Dist", "setup_distributed", "GlobalBatchSampler"]


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        tdist.all_reduce(t)
        return t.tolist()


def setup_distributed(device_pref: str = "auto") -> Dist:
    """Read torchrun's environment; NCCL on GPU, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device_pref == "auto" else device_pref == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device=cuda was asked for but no CUDA device is available; use --device cpu")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not tdist.is_initialized():
        tdist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank, device)


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's share of each global batch.

    Epoch ``e`` permutes ``range(n)`` with a generator seeded by ``(seed, e)``;
    global batch ``b`` is ``perm[b*G:(b+1)*G]`` and rank ``r`` takes its ``r``-th
    contiguous chunk.  Unlike ``DistributedSampler`` this can start mid-epoch
    (``start``) and makes the split across ranks the same as a split into
    micro-batches in one process.
    """

    def __init__(self, n: int, global_batch: int, world: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = True) -> None:
        if global_batch % world:
            raise ValueError(f"global batch {global_batch} must divide evenly over {world} processes")
        if n < global_batch and drop_last:
            raise ValueError(f"{n} training samples are fewer than one batch of {global_batch}; "
                             f"lower batch_size")
        self.n, self.global_batch, self.world, self.rank = n, global_batch, world, rank
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def num_batches(self) -> int:
        return self.n // self.global_batch if self.drop_last else math.ceil(self.n / self.global_batch)

    def __len__(self) -> int:
        return self.num_batches() - self.start

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            perm = torch.randperm(self.n, generator=g).tolist()
        else:
            perm = list(range(self.n))
        local = self.global_batch // self.world
        for b in range(self.start, self.num_batches()):
            chunk = perm[b * self.global_batch:(b + 1) * self.global_batch]
            yield chunk[self.rank * local:(self.rank + 1) * local]
