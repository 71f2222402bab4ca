"""Multi-process training with torch.distributed: context from torchrun's environment, and a launcher.

`vlfuse train CONFIG --nproc 2` re-runs the same command under `torchrun --nproc_per_node 2`; each process
then finds RANK / WORLD_SIZE in its environment and joins a gloo (CPU) or nccl (GPU) process group.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            values = values.clone()
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's decision (e.g. early stop) for every rank."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)])
        dist.broadcast(t, src=0)
        return bool(t.item())


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group when launched by torchrun; a single-process context otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=dist.get_rank(), world_size=world_size, local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, argv: list[str]) -> int:
    """Run `vlfuse <argv>` in `nproc` processes on this machine via torchrun; return its exit code."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        "--standalone", f"--nproc_per_node={nproc}",
        "-m", "vlfuse.cli", *argv,
    ]  # fmt: skip
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(cmd, env=env)
