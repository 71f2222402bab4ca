"""Multi-process training with torch.distributed: context from torchrun's environment, and a launcher.

`vlfuse train CONFIG --nproc 2` re-runs the same command under `torchrun --nproc_per_node 2` (and with `--nnodes`,
`--rdzv-endpoint`, `--max-restarts` under torchrun's c10d rendezvous across machines); each process then finds RANK /
WORLD_SIZE in its environment and joins a gloo (CPU) or nccl (GPU) process group.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from vlfuse.errors import ConfigError


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
        backend = "nccl" if device.type == "cuda" else "gloo"
        rank = int(os.environ["RANK"])
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # torchrun's agent holds the store. Keys of each attempt get their own prefix: a group restarted after a
            # failure (--max-restarts) otherwise reads the dead processes' gloo addresses and never connects
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            agent_store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                                        timeout=timedelta(minutes=10))  # fmt: skip
            store = dist.PrefixStore(f"vlfuse/attempt-{attempt}", agent_store)
            dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size)
        else:
            dist.init_process_group(backend=backend)
    return DistContext(rank=dist.get_rank(), world_size=world_size, local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass
class Launch:
    """How `vlfuse <command>` spreads over processes and machines (torchrun's options).

    One machine and no restarts: torchrun --standalone. Otherwise torchrun's c10d rendezvous at `rdzv_endpoint`
    (HOST:PORT of node 0, which hosts the rendezvous store; c10d then numbers the processes), `nnodes` machines each
    starting `nproc` processes, and up to `max_restarts` restarts of the whole group when a process dies — a
    restarted `vlfuse train` continues from the run's last checkpoint.
    """

    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    rdzv_id: str = "vlfuse"
    max_restarts: int = 0

    @property
    def needed(self) -> bool:
        return self.nproc > 1 or self.nnodes > 1 or self.max_restarts > 0

    def torchrun_args(self) -> list[str]:
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ConfigError(f"--nnodes {self.nnodes} needs --rdzv-endpoint HOST:PORT (a machine every node reaches)")
        if not 0 <= self.node_rank < self.nnodes:
            last = self.nnodes - 1
            raise ConfigError(f"--node-rank {self.node_rank}: expected 0 … {last} for --nnodes {self.nnodes}")
        args = [f"--nproc_per_node={self.nproc}", f"--max_restarts={self.max_restarts}"]
        if self.nnodes == 1 and not self.rdzv_endpoint:
            return ["--standalone", *args]
        host = "true" if self.node_rank == 0 else "false"  # node 0 holds the rendezvous store at the endpoint
        return [*args, f"--nnodes={self.nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={self.rdzv_endpoint}",
                f"--rdzv_id={self.rdzv_id}", f"--rdzv_conf=is_host={host}"]  # fmt: skip


def launch(nproc: int | Launch, argv: list[str]) -> int:
    """Run `vlfuse <argv>` in several processes (on this and other machines) via torchrun; return its exit code."""
    spec = nproc if isinstance(nproc, Launch) else Launch(nproc=nproc)
    cmd = [sys.executable, "-m", "torch.distributed.run", *spec.torchrun_args(), "-m", "vlfuse.cli", *argv]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // spec.nproc)))
    return subprocess.call(cmd, env=env)


def relaunch_argv(argv: list[str], option: str = "--nproc") -> list[str]:
    """The command's own arguments minus `option` and its value, to re-run it under torchrun (whose parser would
    take `--nproc` for its own)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def restarted_by_torchrun() -> bool:
    """Whether this process is a restart of a failed group (torchrun --max-restarts)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
