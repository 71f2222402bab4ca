"""Batch jobs over several processes (`vlfuse evaluate | index | moderate --nproc P`): the command re-runs itself
under torchrun as training does; every process takes its share of the items, and the main process merges the
outputs in the items' order, so the result is the one a single process writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Share:
    """This process's part of a batch job: `rank` of `world` processes."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def span(self, count: int) -> range:
        """Its contiguous part of `count` items (the parts, in rank order, are the items in order)."""
        bounds = torch.linspace(0, count, self.world + 1).round().long().tolist()
        return range(bounds[self.rank], bounds[self.rank + 1])

    def takes(self, position: int) -> bool:
        """Whether item `position` of a stream is this process's (round robin)."""
        return position % self.world == self.rank

    def gather(self, part: Any) -> list[Any] | None:
        """Every process's `part`, in rank order, on the main process (None elsewhere)."""
        if self.world == 1:
            return [part]
        parts: list[Any] | None = [None] * self.world if self.is_main else None
        dist.gather_object(part, parts, dst=0)
        return parts

    def broadcast(self, value: Any) -> Any:
        """The main process's `value`, on every process."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group together (a process leaving it alone can abort its peers' gloo pairs)."""
        if self.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def job_share() -> Share:
    """This process's share: joins the process group when torchrun started several processes (gloo; batch jobs here
    run on CPU), else the whole job."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Share()
    from vlfuse.train.distributed import init_distributed  # the group is joined as training joins it

    ctx = init_distributed(torch.device("cpu"))
    return Share(ctx.rank, ctx.world_size)
