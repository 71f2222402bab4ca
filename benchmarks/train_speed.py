"""Training throughput before and after a change, for the default config and every fusion: the same `vlfuse train`
command run from two source trees (an earlier commit, checked out into a temporary git worktree, and this checkout),
in turns (before, after, before, after …) on the same machine.

    python benchmarks/train_speed.py [--before d714f24] [--rows 6000] [--epochs 3] [--fusions all]

Each run trains `configs/easy_vqa.yaml` with `model.fusion.name` set, on `--rows` training rows; its throughput is
the median `train_samples_per_s` of the epochs after the first (the first builds oneDNN's kernels). Writes
benchmarks/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUSIONS = ["product", "concat", "sum", "attention", "gated", "bilinear", "tensor", "film", "cross_attention", "late"]


def train_rate(src: Path, fusion: str, args: argparse.Namespace, work: Path) -> list[float]:
    """Samples/s of the timed epochs of one run of the sources in `src`."""
    run_dir = work / f"run-{fusion}"
    overrides = [f"model.fusion={{name: {fusion}}}", f"data.limit={args.rows}", f"train.epochs={args.epochs}",
                 "data.test_limit=500", "train.early_stopping_patience=null"]  # fmt: skip
    argv = [sys.executable, "-m", "vlfuse.cli", "train", str(ROOT / "configs" / "easy_vqa.yaml"), "--run-dir",
            str(run_dir), "--overwrite", *[x for o in overrides for x in ("--set", o)]]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=work, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{fusion} from {src}: {proc.stderr[-2000:]}")
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["train_samples_per_s"] for r in history[1:] if "train_samples_per_s" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="d714f24", help="git revision to compare against")
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fusions", default="all", help="comma-separated, or all")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_speed.json")
    args = parser.parse_args()
    fusions = FUSIONS if args.fusions == "all" else args.fusions.split(",")
    results: dict = {"before": args.before, "after": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                     capture_output=True, text=True).stdout.strip(), "rows": args.rows, "epochs": args.epochs,
                     "fusions": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        try:
            for fusion in fusions:
                rates = {"before": train_rate(before / "src", fusion, args, Path(tmp)),
                         "after": train_rate(ROOT / "src", fusion, args, Path(tmp))}  # fmt: skip
                medians = {k: statistics.median(v) for k, v in rates.items()}
                results["fusions"][fusion] = {"samples_per_s": rates, "median": medians,
                                              "after_over_before": medians["after"] / medians["before"]}  # fmt: skip
                print(f"{fusion:16s} before {medians['before']:8,.0f}  after {medians['after']:8,.0f} samples/s  "
                      f"({medians['after'] / medians['before']:.2f}×)", flush=True)  # fmt: skip
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, capture_output=True)
    ratios = [f["after_over_before"] for f in results["fusions"].values()]
    results["geometric_mean_ratio"] = statistics.geometric_mean(ratios)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"geometric mean after/before: {results['geometric_mean_ratio']:.2f}×")


if __name__ == "__main__":
    main()
