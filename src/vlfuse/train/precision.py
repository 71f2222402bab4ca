"""`train.precision`: fp32, bf16, or auto — bf16 autocast only where the hardware computes bf16 natively.

On a CPU without native bf16 instructions, bf16 matrix products are emulated and run orders of magnitude slower
than fp32 (measured at ~0.3 vs ~170 GFLOP/s on one machine of this project), so `auto` picks bf16 only for a CUDA
device that supports it, or a CPU whose flags name `avx512_bf16` or `amx_bf16`; fp32 everywhere else.
"""

from __future__ import annotations

import logging
import platform
from functools import cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (Linux /proc/cpuinfo); empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether `device` computes bf16 natively, and what that was judged from."""
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(device)
        return supported, f"CUDA device {name} {'supports' if supported else 'lacks'} bf16"
    found = [flag for flag in NATIVE_BF16_FLAGS if flag in cpu_flags()]
    if found:
        return True, f"the CPU has {', '.join(found)}"
    return False, f"the CPU ({platform.machine()}) has neither {' nor '.join(NATIVE_BF16_FLAGS)}"


def resolve_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """(the precision to train in, why): `auto` follows `native_bf16`; an explicit choice is kept, with a warning
    when bf16 is asked of hardware that only emulates it."""
    native, why = native_bf16(device)
    if requested == "auto":
        return ("bf16" if native else "fp32"), f"auto: {why}"
    if requested == "bf16" and not native:
        _warn_emulated(why)
    return requested, f"set in the config ({why})"


@cache
def _warn_emulated(why: str) -> None:
    """Once per process (the runner and every stage's trainer resolve the precision)."""
    log.warning("train.precision is bf16 but %s: bf16 is emulated here and can be many times slower than fp32; "
                "use precision: auto", why)  # fmt: skip
