"""Processes under torchrun: rank, world size and device, reductions over ranks, DDP wrapping, rank-0 logs."""

from __future__ import annotations

import datetime
import os
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm


class Dist:
    """Rank, world size and device of this process (``world == 1`` without torchrun)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        wanted = cfg["system"]["device"]
        use_cuda = torch.cuda.is_available() if wanted == "auto" else wanted == "cuda"
        if use_cuda and not torch.cuda.is_available():
            raise RuntimeError("system.device is cuda but torch sees no CUDA device")
        self.device = torch.device(f"cuda:{self.local_rank}" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.set_device(self.device)
        if self.world > 1:
            backend = "nccl" if use_cuda else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10))
        self.main = self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64)."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def wrap_ddp(d: Dist, module: nn.Module) -> nn.Module:
    """DistributedDataParallel around ``module`` under torchrun; the module itself otherwise."""
    if d.world == 1:
        return module
    # SegFormer's depthwise convs produce channels-last-like grads: harmless, but warned on every step.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DistributedDataParallel(module, device_ids=[d.local_rank] if d.device.type == "cuda" else None)


def log(d: Dist, message: str) -> None:
    if d.main:
        tqdm.write(message)


def unwrap(module: nn.Module | None) -> nn.Module | None:
    return module.module if isinstance(module, DistributedDataParallel) else module
