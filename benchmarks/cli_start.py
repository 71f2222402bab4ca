"""How long the command line takes from a fresh process to its answer (each command a new `vlfuse` process, as from a
shell; the operating system's file cache warm, as after any earlier use). Commands run in turns (A B C … A B C …) so
that drift in the machine's speed falls on all of them; median, min and max over `--reps` turns.

    python benchmarks/cli_start.py [--run runs/main] [--reps 7]

Targets (issue #17): `--help` and `list` ≤ 0.5 s more than `python -c pass`; `predict` ≤ 1.5 s; `ask easy-vqa-bridge`
≤ 3 s. `predict` runs on the run's ONNX export when it is current (exported here first if it is not), and once more
with `--backend torch` for comparison. Writes benchmarks/results/cli_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commands(run: str, image: str) -> dict[str, list[str]]:
    vlfuse = [sys.executable, "-m", "vlfuse.cli"]
    question = "what color is the shape?"
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "vlfuse --help": [*vlfuse, "--help"],
        "vlfuse list": [*vlfuse, "list"],
        "vlfuse predict (onnx export)": [*vlfuse, "predict", run, "--image", image, "--text", question, "--json"],
        "vlfuse predict --backend torch": [
            *vlfuse, "predict", run, "--image", image, "--text", question, "--json", "--backend", "torch",
        ],  # fmt: skip
        "vlfuse ask easy-vqa-bridge": [*vlfuse, "ask", "easy-vqa-bridge", image, question],
    }


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/main", help="a classification run (make main)")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cli_start.json")
    args = parser.parse_args()
    from easy_vqa import get_test_image_paths

    from vlfuse.classify import WEIGHTS
    from vlfuse.export.format import export_is_current

    run = Path(args.run)
    if not export_is_current(run / "onnx", run / WEIGHTS):
        subprocess.run([sys.executable, "-m", "vlfuse.cli", "export", str(run)], check=True, capture_output=True)
    image = get_test_image_paths()[0]
    argvs = commands(str(run), image)
    first = {name: timed(argv) for name, argv in argvs.items()}  # the first call of each (compiles, warms caches)
    seconds: dict[str, list[float]] = {name: [] for name in argvs}
    for _ in range(args.reps):
        for name, argv in argvs.items():
            seconds[name].append(timed(argv))
    summary = {name: {"median": round(statistics.median(v), 3), "min": round(min(v), 3), "max": round(max(v), 3),
                      "first": round(first[name], 3)} for name, v in seconds.items()}  # fmt: skip
    bare = summary["python -c pass"]["median"]
    targets = {
        "vlfuse --help": ("≤ 0.5 s over python -c pass", summary["vlfuse --help"]["median"] - bare <= 0.5),
        "vlfuse list": ("≤ 0.5 s over python -c pass", summary["vlfuse list"]["median"] - bare <= 0.5),
        "vlfuse predict (onnx export)": ("≤ 1.5 s", summary["vlfuse predict (onnx export)"]["median"] <= 1.5),
        "vlfuse ask easy-vqa-bridge": ("≤ 3 s", summary["vlfuse ask easy-vqa-bridge"]["median"] <= 3.0),
    }
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "reps": args.reps,
        "seconds": summary,
        "targets": {name: {"target": t, "met": bool(met)} for name, (t, met) in targets.items()},
    }
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    for name, s in summary.items():
        print(f"{name:32s} median {s['median']:.2f} s (min {s['min']:.2f}, max {s['max']:.2f}; first {s['first']:.2f})")


if __name__ == "__main__":
    main()
