"""How should `vlfuse compare` use the cores? Times the same small comparison run as
(a) one process with all cores' threads, then (b) one single-threaded process per core, in the same session.

    python benchmarks/compare_parallelism.py      # → benchmarks/results/compare_parallelism.json
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from vlfuse.compare import run_comparison
from vlfuse.task import load_config

OVERRIDES = {"train.epochs": 2, "data.limit": 8000, "data.test_limit": 2000}


def main() -> None:
    cfg = load_config("configs/easy_vqa.yaml", OVERRIDES)
    cores = os.cpu_count() or 1
    results = {"config": "configs/easy_vqa.yaml", "overrides": OVERRIDES, "cores": cores, "fusions": "product,concat"}
    for label, jobs in (("one_process_all_threads", 1), ("one_process_per_core", cores)):
        out = Path("runs/bench/compare_parallelism") / label
        shutil.rmtree(out, ignore_errors=True)
        run = run_comparison(cfg, fusions="product,concat", seeds=1, out_dir=out, jobs=jobs)
        results[label] = {key: run[key] for key in ("jobs", "threads_per_job", "total_seconds")}
        print(label, results[label], flush=True)
    results["speedup_per_core_processes"] = round(
        results["one_process_all_threads"]["total_seconds"] / results["one_process_per_core"]["total_seconds"], 2
    )
    path = Path("benchmarks/results/compare_parallelism.json")
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
