"""ONNX export of a run, checked and timed against PyTorch. Measures, in one run:

- fidelity: max |ONNX logits - PyTorch logits| over the whole test split (target <= 1e-4), and both accuracies,
- int8: the dynamically quantised model's accuracy change (points) and its agreement with the float model,
- latency: PyTorch vs onnxruntime (float and int8) per call, at batch 1 and batch 32, same thread count.

Results: benchmarks/results/onnx_export.json

    python benchmarks/onnx_export.py [--run runs/main] [--out-dir runs/main/onnx]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from vlfuse.api import load_run
from vlfuse.export.onnx import export_onnx
from vlfuse.export.runtime import OnnxModel


def median_ms(fn, repeats: int) -> float:
    for _ in range(max(3, repeats // 10)):  # warm-up
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/main")
    parser.add_argument("--out-dir", default=None, help="export folder (default RUN/onnx)")
    parser.add_argument("--chunk", type=int, default=512, help="rows per call when scoring the test split")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per latency figure")
    parser.add_argument("--note", default="", help="recorded in the results, e.g. the machine's load")
    parser.add_argument("--out", default="benchmarks/results/onnx_export.json")
    args = parser.parse_args()

    run = load_run(args.run)
    start = time.perf_counter()
    out = export_onnx(run, args.out_dir, quantize="int8")
    export_s = time.perf_counter() - start
    fp32, int8 = OnnxModel(out), OnnxModel(out, int8=True)
    split = run.split_data("test")
    labels = split.labels.numpy()

    torch_logits, ort_logits, int8_logits = [], [], []
    for lo in range(0, len(split), args.chunk):
        rows = range(lo, min(lo + args.chunk, len(split)))
        images = [split.images[split.image_index[r]] for r in rows]  # (C, H, W) uint8 each
        texts = [split.texts[r] for r in rows]
        with torch.inference_mode():
            torch_logits.append(run.model(run.make_batch(images, texts)).numpy())  # (n, K)
        feeds = fp32.feeds(images, texts)
        ort_logits.append(fp32.logits(feeds))  # (n, K)
        int8_logits.append(int8.logits(feeds))  # (n, K)
    reference, exported, quantised = (np.concatenate(x) for x in (torch_logits, ort_logits, int8_logits))  # (N, K)

    def accuracy(logits: np.ndarray) -> float:
        return float((logits.argmax(1) == labels).mean())

    latency = {}
    for batch_size in (1, 32):
        rows = range(batch_size)
        images = [split.images[split.image_index[r]] for r in rows]
        texts = [split.texts[r] for r in rows]
        batch = run.make_batch(images, texts)
        feeds = fp32.feeds(images, texts)
        repeats = args.repeats if batch_size == 1 else max(20, args.repeats // 4)
        with torch.inference_mode():
            torch_ms = median_ms(lambda b=batch: run.model(b), repeats)
        ort_ms = median_ms(lambda f=feeds: fp32.logits(f), repeats)
        int8_ms = median_ms(lambda f=feeds: int8.logits(f), repeats)
        latency[f"batch_{batch_size}"] = {
            "pytorch_ms": torch_ms,
            "onnxruntime_ms": ort_ms,
            "onnxruntime_int8_ms": int8_ms,
            "onnxruntime_speedup_vs_pytorch": round(torch_ms / ort_ms, 2),
            "int8_speedup_vs_onnx_float": round(ort_ms / int8_ms, 2),
        }

    max_diff = float(np.abs(exported - reference).max())
    result = {
        "run": args.run,
        "test_rows": len(split),
        "export_seconds": round(export_s, 2),
        "max_abs_logit_diff_onnx_vs_pytorch": max_diff,
        "target_max_abs_diff": 1e-4,
        "target_met": max_diff <= 1e-4,
        "accuracy": {"pytorch": accuracy(reference), "onnxruntime": accuracy(exported), "int8": accuracy(quantised)},
        "int8_accuracy_change_points": round(100 * (accuracy(quantised) - accuracy(exported)), 3),
        "int8_top1_agreement_with_float": float((quantised.argmax(1) == exported.argmax(1)).mean()),
        "int8_max_abs_logit_diff": float(np.abs(quantised - exported).max()),
        "file_bytes": {name: (out / name).stat().st_size for name in ("model.onnx", "model.int8.onnx")},
        "latency": latency,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}",
        "note": args.note,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
