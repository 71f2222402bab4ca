"""Compute efficiency of the language bridge's training step: achieved FLOP/s against this machine's matmul peaks.

    python benchmarks/bridge_efficiency.py [--config configs/bridge_easy_vqa.yaml] [--steps 6]

1. The peaks: large square matrix products (fp32, and bf16 — native or emulated, whatever this CPU does), timed
   with the thread count vlfuse would choose.
2. The step: the config's last stage (questions + captions) is built exactly as `vlfuse train` builds it, one batch
   is counted with `torch.utils.flop_counter.FlopCounterMode` (forward + backward; the matrix products and
   convolutions, which is what a peak is measured on), then `--steps` optimizer steps are timed in the precision
   `train.precision` resolves to here.

Writes benchmarks/results/bridge_efficiency.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent


def matmul_peak(dtype: torch.dtype, size: int, seconds: float = 2.0) -> dict:
    """GFLOP/s of (size × size) @ (size × size) in `dtype`: the best of repeated products within `seconds`."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)  # warm-up
    rates, started = [], time.perf_counter()
    while time.perf_counter() - started < seconds or len(rates) < 3:
        start = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return {"size": size, "gflops_best": max(rates), "gflops_median": statistics.median(rates), "runs": len(rates)}


def bridge_step(config: Path, steps: int) -> dict:
    from vlfuse.task import get_task, load_config
    from vlfuse.train.distributed import DistContext
    from vlfuse.train.precision import resolve_precision
    from vlfuse.train.runner import RunContext
    from vlfuse.train.trainer import build_optimizer

    cfg = load_config(config, ["data.limit=512"])
    device = torch.device("cpu")
    precision, why = resolve_precision(cfg.train.precision, device)
    with tempfile.TemporaryDirectory() as tmp:
        task = get_task(cfg.task).training_class(cfg, RunContext(Path(tmp), device, DistContext(), False))
        task.prepare()
        torch.manual_seed(0)
        model = task.build()
        stage = task.stages(model)[-1]
        optimizer = build_optimizer(model, stage.train)
        batches = iter(stage.loader)
        model.train()

        def step(batch) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = stage.loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        batch = next(batches)
        counter = FlopCounterMode(display=False)
        with counter:
            step(batch)
        flops = counter.get_total_flops()
        times = []
        for _ in range(steps):
            batch = next(batches)
            start = time.perf_counter()
            step(batch)
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "precision": precision, "precision_why": why, "batch_size": len(batch), "flops_per_step": flops,
        "step_seconds_median": seconds, "step_seconds": times, "achieved_gflops": flops / seconds / 1e9,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "bridge_easy_vqa.yaml")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bridge_efficiency.json")
    args = parser.parse_args()
    from vlfuse.threads import configure_threads
    from vlfuse.train.precision import native_bf16

    threads, _ = configure_threads()
    peaks = {"fp32": matmul_peak(torch.float32, 1024), "bf16": matmul_peak(torch.bfloat16, 512)}
    native, native_why = native_bf16(torch.device("cpu"))
    step = bridge_step(args.config, args.steps)
    peak = peaks["bf16" if step["precision"] == "bf16" else "fp32"]["gflops_best"]
    results = {
        "config": str(args.config.relative_to(ROOT)), "threads": threads, "native_bf16": native,
        "native_bf16_why": native_why, "matmul_peaks": peaks, "step": step,
        "fraction_of_peak": step["achieved_gflops"] / peak,
        "fraction_of_fp32_peak": step["achieved_gflops"] / peaks["fp32"]["gflops_best"],
    }  # fmt: skip
    args.out.write_text(json.dumps(results, indent=1))
    print(f"matmul peak fp32 {peaks['fp32']['gflops_best']:.0f} GFLOP/s, bf16 {peaks['bf16']['gflops_best']:.1f} "
          f"GFLOP/s (native bf16: {native}); bridge step ({step['precision']}): {step['flops_per_step'] / 1e9:.1f} "
          f"GFLOP in {step['step_seconds_median']:.2f} s = {step['achieved_gflops']:.1f} GFLOP/s, "
          f"{results['fraction_of_peak']:.0%} of the {step['precision']} peak")  # fmt: skip


if __name__ == "__main__":
    main()
