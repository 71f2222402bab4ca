"""Train configs end to end through the real CLI and record test metrics, wall time and throughput.

Each entry runs `vlfuse train CONFIG` in a fresh process (wall time includes Python start-up and data
preparation, as a user would see it) and reads the run directory it wrote.

    python benchmarks/accuracy.py easy_vqa          # default (also the best) and classic configs on easy-VQA
    python benchmarks/accuracy.py fashion_mnist     # Fashion-MNIST image-only and caption pairs
    python benchmarks/accuracy.py video             # the video configs on moving-shapes (accuracy per question kind)

Results: benchmarks/results/<suite>.json (cited in the README).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

SUITES = {
    "easy_vqa": {
        "default": "configs/easy_vqa.yaml",
        "classic": "configs/easy_vqa_classic.yaml",
    },
    "fashion_mnist": {
        "image_only": "configs/fashion_mnist.yaml",
        "pairs": "configs/fashion_mnist_pairs.yaml",
    },
    "video": {
        "default": "configs/video.yaml",  # frozen pretrained frame tower, cached frame features
        "cnn": "configs/video_cnn.yaml",  # a frame tower trained from scratch on pixels
    },
}


def run_one(name: str, config: str, runs_root: Path) -> dict:
    run_dir = runs_root / name
    start = time.perf_counter()
    command = [sys.executable, "-m", "vlfuse.cli", "train", config, "--run-dir", str(run_dir), "--overwrite"]
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{config} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "config": config,
        "test": metrics["test"],
        "val": metrics["val"],
        **({"test_by_kind": metrics["test_by_kind"]} if "test_by_kind" in metrics else {}),  # video QA
        "wall_seconds": round(wall, 1),
        "data_seconds": summary["data_seconds"],
        "epochs": summary["epochs"],
        "parameters": summary["parameters"],
        "train_samples_per_s": round(sum(r["train_samples_per_s"] for r in history) / len(history), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("suite", choices=sorted(SUITES))
    parser.add_argument("--only", nargs="*", help="subset of the suite's entries")
    parser.add_argument("--runs", default="runs/bench")
    args = parser.parse_args()
    out = Path("benchmarks/results") / f"{args.suite}.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    for name, config in SUITES[args.suite].items():
        if args.only and name not in args.only:
            continue
        results[name] = run_one(name, config, Path(args.runs) / args.suite)
        results[name]["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
        print(name, json.dumps(results[name]["test"]), f"{results[name]['wall_seconds']} s", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
