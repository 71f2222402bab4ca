"""How many CPU threads to compute with: the cores other processes leave free, re-chosen when that changes.

PyTorch's (and numba's) OpenMP pool spins on every core it was given. When another process takes one of them the
pool waits on the slowest thread at every parallel region and throughput collapses (on 2 cores with one busy
neighbour: 2 threads ran the classic model at a third of the rate of 1 thread; `benchmarks/classic_speed.py`). So the
thread count is chosen from the cores actually free: this process's affinity minus the CPU time everyone else used
over a short window (from /proc/stat, less this process's own time). A trainer re-measures every few seconds
(`ThreadWatch`) and changes the count when the free cores change. `train.threads` (or a call with `requested`)
fixes the count instead. Where /proc/stat is unreadable (not Linux), every core is taken as free.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 0.1  # the first reading's window
RECHECK_SECONDS = 5.0  # how often a watcher re-measures
TAKEN = 0.3  # a core counts as taken once other processes use more than this share of it


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class CpuReading:
    """A moment's counters: all CPUs' busy seconds (incl. steal), this process's CPU seconds, wall seconds."""

    busy: float | None  # None where /proc/stat is unreadable
    own: float
    wall: float


def read_cpu() -> CpuReading:
    busy = None
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user..steal, no guest (counted in user)
    except (OSError, ValueError, IndexError):
        pass
    return CpuReading(busy, time.process_time(), time.perf_counter())


def others_load(before: CpuReading, after: CpuReading) -> float:
    """Cores' worth of CPU that other processes used between two readings (0 where unknown)."""
    if before.busy is None or after.busy is None or after.wall <= before.wall:
        return 0.0
    others = (after.busy - before.busy) - (after.own - before.own)
    return max(0.0, others / (after.wall - before.wall))


def threads_for(load: float, cores: int) -> int:
    """Threads for `cores` cores of which `load` cores' worth are used by others: one per core not taken (a core is
    taken past `TAKEN` of it, so background noise keeps every core and a neighbour squeezed by our own spinning
    threads still counts), at least 1."""
    return max(1, min(cores, cores - math.ceil(load - TAKEN)))


def set_threads(threads: int) -> None:
    """Set the intra-op threads of numba's kernels (when numba is loaded) and of torch.

    numba first: its first `set_num_threads` launches its OpenMP layer, which shares the process's OpenMP runtime
    with torch and resets that runtime's thread count to all cores (found when a 1-thread run trained on 2)."""
    import sys

    import torch

    if "numba" in sys.modules:
        sys.modules["numba"].set_num_threads(min(threads, sys.modules["numba"].config.NUMBA_NUM_THREADS))
    torch.set_num_threads(threads)


def _cores(share: int) -> int:
    """This process's share of its cores, when it is one of `share` processes splitting them."""
    return max(1, available_cores() // share)


def choose_threads(requested: int | None = None, *, share: int = 1) -> tuple[int, str]:
    """(threads, why) for a process that is one of `share` on this machine; `requested` wins when given."""
    cores = _cores(share)
    if requested is not None:
        return requested, f"set to {requested}"
    before = read_cpu()
    time.sleep(SAMPLE_SECONDS)
    load = others_load(before, read_cpu())
    threads = threads_for(load, cores)
    return threads, f"{threads} of {cores} core(s): other processes used {load:.1f} core(s)"


def configure_threads(requested: int | None = None, *, share: int = 1) -> tuple[int, str]:
    """Choose and set the thread count (see `choose_threads`); logs why. Returns (threads, why)."""
    threads, why = choose_threads(requested, share=share)
    set_threads(threads)
    log.info("threads: %s", why)
    return threads, why


class ThreadWatch:
    """Re-chooses the thread count every `every` seconds from the load measured since the last check.

    `check()` is cheap (two file reads when due, a clock read otherwise); call it between steps.
    """

    def __init__(self, threads: int, *, share: int = 1, every: float = RECHECK_SECONDS) -> None:
        self.threads = threads
        self.cores = _cores(share)
        self.every = every
        self.last = read_cpu()
        self.changes: list[tuple[float, int, float]] = []  # (wall time, new threads, others' load)

    def check(self) -> int:
        now = time.perf_counter()
        if now - self.last.wall < self.every:
            return self.threads
        reading = read_cpu()
        load = others_load(self.last, reading)
        self.last = reading
        threads = threads_for(load, self.cores)
        if threads != self.threads:
            log.info("threads: %d → %d (other processes used %.1f core(s))", self.threads, threads, load)
            set_threads(threads)
            self.threads = threads
            self.changes.append((now, threads, load))
        return self.threads
