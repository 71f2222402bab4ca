"""Modality dropout on easy-VQA: what it costs on complete inputs and what it buys when a modality is missing.

Trains the same config twice per seed — model.modality_dropout 0.0 and 0.3, nothing else different — then runs the
robustness report (`vlfuse evaluate RUN --robustness`) on the test split of both.

    python benchmarks/modality_dropout.py                 # configs/easy_vqa.yaml, full training (slow on 2 cores)
    python benchmarks/modality_dropout.py --seeds 3       # mean over seeds 0, 1, 2
    python benchmarks/modality_dropout.py --quick         # 1 epoch on 2,000 rows: checks that the script works

Results: benchmarks/results/modality_dropout.json (with --quick: runs/bench/modality_dropout_quick.json, so a smoke
run never replaces real results). Target: ≤ 0.5 points lost on complete inputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

QUICK = ["train.epochs=1", "data.limit=2000", "data.test_limit=1000"]


def train_and_probe(config: str, overrides: list[str], run_dir: Path) -> dict:
    """Train one run (replacing any old one in `run_dir`) and return its robustness rows and timings."""
    from vlfuse.api import train
    from vlfuse.classify.robustness import evaluate_robustness

    start = time.perf_counter()
    run = train(config, overrides=overrides, run_dir=run_dir, overwrite=True)
    train_seconds = time.perf_counter() - start
    rows = evaluate_robustness(run, "test")
    return {
        "run_dir": str(run_dir),
        "train_seconds": round(train_seconds, 1),
        "val": run.metrics.get("val", {}),
        "test": {r["condition"]: round(r["value"], 4) for r in rows},
    }


def summarize(results: dict[str, dict[str, dict]], rates: list[str]) -> dict:
    """Mean over seeds of complete / image-missing / text-missing test accuracy per dropout rate, and the cost."""

    def mean(rate: str, condition: str) -> float:
        values = [seed_result["test"][condition] for seed_result in results[rate].values()]
        return round(sum(values) / len(values), 4)

    base, dropped = rates
    complete = {rate: mean(rate, "complete") for rate in rates}
    cost = round(100 * (complete[base] - complete[dropped]), 2)
    return {
        "complete_accuracy": complete,
        "complete_points_lost_with_dropout": cost,  # positive = dropout is worse on complete inputs
        "image_missing_accuracy": {rate: mean(rate, "image missing") for rate in rates},
        "text_missing_accuracy": {rate: mean(rate, "text missing") for rate in rates},
        "target_at_most_0.5_points_lost": cost <= 0.5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/easy_vqa.yaml")
    parser.add_argument("--dropout", type=float, default=0.3, help="modality_dropout of the second run")
    parser.add_argument("--seeds", type=int, default=1, help="train both runs with seeds 0..N-1")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="extra overrides for both runs")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {' '.join(QUICK)}")
    parser.add_argument("--runs", default="runs/bench/modality_dropout")
    parser.add_argument("--out", default=None, help="results JSON (default depends on --quick)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    overrides = (QUICK if args.quick else []) + args.overrides
    default_out = "runs/bench/modality_dropout_quick.json" if args.quick else "benchmarks/results/modality_dropout.json"
    out = Path(args.out or default_out)
    rates = ["0.0", str(args.dropout)]
    results: dict[str, dict[str, dict]] = {rate: {} for rate in rates}
    for seed in range(args.seeds):
        for rate in rates:
            run_overrides = [*overrides, f"seed={seed}", f"model.modality_dropout={rate}"]
            run_dir = Path(args.runs) / f"dropout{rate}-seed{seed}"
            results[rate][f"seed{seed}"] = train_and_probe(args.config, run_overrides, run_dir)
            print(f"dropout {rate} seed {seed}:", json.dumps(results[rate][f"seed{seed}"]["test"]), flush=True)
    report = {
        "config": args.config,
        "overrides": overrides,
        "seeds": args.seeds,
        "quick": args.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "summary": summarize(results, rates),
        "runs": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(report["summary"], indent=1), f"\nwritten: {out}", flush=True)


if __name__ == "__main__":
    main()
