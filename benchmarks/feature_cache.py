"""Epoch time on cached frozen features vs recomputing them, in one run (target ≥ 10×).

Trains the same config (a frozen EfficientNet-Lite0 tower) for one epoch twice: once with train.cache_features
(the tower runs once per image, before training, and epochs read the cache) and once without (the tower runs on
every batch). The cached run's features are computed into a fresh cache first, so the reported epoch time excludes
that one-off cost, which is reported separately.

    python benchmarks/feature_cache.py [--config configs/easy_vqa_efficientnet.yaml] [--limit 6000]

Results: benchmarks/results/feature_cache.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def epoch_seconds(config: str, overrides: dict, run_dir: Path) -> dict:
    """Train one epoch; return the epoch's training seconds (from metrics.jsonl) and the whole call's seconds."""
    from vlfuse.api import train

    start = time.perf_counter()
    train(config, overrides=overrides, run_dir=run_dir, overwrite=True)
    wall = time.perf_counter() - start
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    return {"epoch_train_seconds": round(record["train_seconds"], 2), "wall_seconds": round(wall, 1),
            "val_accuracy": round(record["val_accuracy"], 4)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/easy_vqa_efficientnet.yaml")
    parser.add_argument("--limit", type=int, default=6000, help="training rows (data.limit)")
    parser.add_argument("--out", default="benchmarks/results/feature_cache.json")
    args = parser.parse_args()
    os.environ["VLFUSE_CACHE"] = tempfile.mkdtemp(prefix="vlfuse-cache-")  # a cold cache, measured as such
    base = {"train.epochs": 1, "data.limit": args.limit, "data.test_limit": 200}
    runs = Path(tempfile.mkdtemp(prefix="vlfuse-bench-"))
    cached = epoch_seconds(args.config, {**base, "train.cache_features": True}, runs / "cached")
    recomputed = epoch_seconds(args.config, {**base, "train.cache_features": False}, runs / "recomputed")
    result = {
        "config": args.config,
        "rows": args.limit,
        "cached": cached,
        "recomputed": recomputed,
        "speedup_epoch": round(recomputed["epoch_train_seconds"] / cached["epoch_train_seconds"], 1),
        # the rest of the cached run: data preparation, the one-off feature computation, evaluation
        "cached_run_other_seconds": round(cached["wall_seconds"] - cached["epoch_train_seconds"], 1),
        "target_at_least_10x": recomputed["epoch_train_seconds"] >= 10 * cached["epoch_train_seconds"],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
