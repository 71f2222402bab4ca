"""Train the retrieval configs end to end through the real CLI and record retrieval and zero-shot figures.

Each entry runs `vlfuse train CONFIG` in a fresh process and reads the run directory it wrote (test_metrics.json:
recall@1/5/10 and median rank both ways on the test split, zero-shot accuracy from the held-out prompt templates).

    python benchmarks/retrieval.py                       # all entries
    python benchmarks/retrieval.py --only easy_vqa       # one of: easy_vqa, easy_vqa_heldout, fashion_mnist, ...
    python benchmarks/retrieval.py --existing easy_vqa=runs/x   # record a finished run of that entry's config

Results: benchmarks/results/retrieval.json (cited in the README). The machine's load average when an entry
started is recorded too: figures measured beside other jobs are slower than on a quiet machine; the CPU time
(user + system, all threads) is not, and bounds the quiet wall time from below (cpu_seconds / cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ENTRIES = {
    "easy_vqa": "configs/retrieval_easy_vqa.yaml",
    "fashion_mnist": "configs/retrieval_fashion_mnist.yaml",
    "fashion_mnist_heldout": "configs/retrieval_fashion_mnist_heldout.yaml",
    "easy_vqa_heldout": "configs/retrieval_easy_vqa_heldout.yaml",
}
TARGETS = {  # issue #5: (split, metric, minimum)
    "easy_vqa": [("test", "t2i_r1", 0.95), ("test", "i2t_r1", 0.95)],
    "fashion_mnist": [("zeroshot", "accuracy", 0.75)],
}


def same_config(config: str, run_dir: Path) -> bool:
    """Whether the run directory was trained from `config` (compared after validation, so defaults count)."""
    from vlfuse.task import load_config

    return load_config(config) == load_config(run_dir / "config.yaml")


def run_one(name: str, config: str, runs_root: Path, existing: Path | None = None) -> dict:
    run_dir = existing or runs_root / name
    load = os.getloadavg()[0]
    wall = cpu = None
    if existing is None:
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        command = [sys.executable, "-m", "vlfuse.cli", "train", config, "--run-dir", str(run_dir), "--overwrite"]
        proc = subprocess.run(command, capture_output=True, text=True)
        wall = round(time.perf_counter() - start, 1)
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = round((cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime), 1)
        if proc.returncode != 0:
            raise SystemExit(f"{config} failed:\n{proc.stderr[-3000:]}")
    elif not same_config(config, existing):
        raise SystemExit(f"--existing {existing} was not trained from {config}")
    summary = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    targets = {
        f"{split}.{metric} >= {minimum}": metrics[split][metric] >= minimum
        for split, metric, minimum in TARGETS.get(name, [])
    }
    return {
        "config": config,
        "run_dir": str(run_dir),
        "metrics": metrics,
        "targets_met": targets,
        "wall_seconds": wall,  # None: recorded from an existing run (--existing), not timed here
        "cpu_seconds": cpu,  # user + system over all threads: robust to other jobs on the machine
        "total_seconds_in_run": summary.get("total_seconds"),
        "data_seconds": summary["data_seconds"],
        "epochs": summary["epochs"],
        "train_pairs": summary["train_pairs"],
        "parameters": summary["parameters"],
        "train_pairs_per_s": round(sum(r["train_samples_per_s"] for r in history) / len(history), 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_at_start": round(load, 2) if existing is None else None,
        "recorded_from_existing_run": existing is not None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", choices=sorted(ENTRIES), help="subset of the entries")
    parser.add_argument("--runs", default="runs/bench/retrieval")
    parser.add_argument("--existing", nargs="*", default=[], metavar="NAME=RUN_DIR",
                        help="record a finished run of the entry's config instead of training it again")  # fmt: skip
    args = parser.parse_args()
    existing = {k: Path(v) for k, v in (item.split("=", 1) for item in args.existing)}
    out = Path("benchmarks/results/retrieval.json")
    results = json.loads(out.read_text()) if out.is_file() else {}
    for name, config in ENTRIES.items():
        if (args.only and name not in args.only) or (existing and name not in existing and not args.only):
            continue
        results[name] = run_one(name, config, Path(args.runs), existing.get(name))
        test = results[name]["metrics"].get("test", {})
        print(name, {k: round(v, 4) for k, v in test.items() if k.endswith("r1")},
              results[name]["metrics"].get("zeroshot"), results[name]["wall_seconds"], flush=True)  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
