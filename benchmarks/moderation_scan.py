"""Batch scans with `vlfuse moderate`: throughput, flat memory, and exactly-once output through SIGKILLs.

1. Throughput of the default model (a trained `configs/moderate_marketplace.yaml` run) on pre-decoded built-in items
   (marketplace:test, 3 repeats) and on image files (PNG files + a CSV table), in one process each, side by side.
2. Peak memory (max RSS of the scanning process) for 20,000 and 100,000 items: flat in the number of items.
3. A 100,000-item scan (marketplace:train, --limit 100000) killed with SIGKILL at 10 random points, each kill followed
   by the same command again; the output must hold items 0..99,999 exactly once, with the same decisions as an
   uninterrupted scan.

    python benchmarks/moderation_scan.py --run runs/moderate_marketplace   # → benchmarks/results/moderation_scan.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VLFUSE = [sys.executable, "-m", "vlfuse.cli", "moderate"]


# runs a command and prints the peak memory (max RSS, KiB) of that one child: a fresh parent per measurement
PEAK = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
        "print('max_rss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "sys.exit(done.returncode)")  # fmt: skip


def timed_scan(run: str, source: str, out: Path, *extra: str) -> dict:
    """One scan in a fresh process; its items/s (as the scan reports it) and its peak memory."""
    command = [*VLFUSE, run, source, "--out", str(out), "--overwrite", "--no-report", *extra]
    done = subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True, check=True)
    peak = int(done.stdout.split("max_rss_kib")[1].split()[0])
    text = " ".join(done.stdout.split())  # the console may wrap: "… N items scanned in S s (R items/s); …"
    items, rest = text.split(" items scanned in ")
    seconds, rate = rest.split(" s (")[0], rest.split(" s (")[1].split(" items/s")[0]
    n = int(items.split()[-1].replace(",", ""))
    return {"items": n, "seconds": float(seconds), "items_per_s": float(rate.replace(",", "")),
            "max_rss_mb": peak / 1024}  # fmt: skip


def image_file_table(run, folder: Path, n: int) -> Path:
    """n marketplace test listings written as PNG files plus a CSV table (image, text)."""
    from PIL import Image

    from vlfuse.data.builtin import load_builtin

    raw = load_builtin("marketplace", "test", run.cfg.data.model_copy(update={"name": "marketplace"}))
    rows = ["image,text"]
    for i in range(n):
        pixels = raw.images[int(raw.image_index[i])][0].numpy()  # (28, 28)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        rows.append(f'{i}.png,"{raw.texts[i][0]}"')
    (folder / "listings.csv").write_text("\n".join(rows) + "\n")
    return folder / "listings.csv"


def killed_scan(run: str, out: Path, total: int, kills: int, seed: int) -> dict:
    """Kill the scan with SIGKILL `kills` times at random item counts, re-running after each; then finish it."""
    rng = np.random.default_rng(seed)
    points = sorted(rng.choice(np.arange(1000, total - 1000), size=kills, replace=False).tolist())
    args = [*VLFUSE, run, "marketplace:train", "--limit", str(total), "--out", str(out), "--no-report"]
    if out.exists():
        out.unlink()
    killed_at = []
    for point in points:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while process.poll() is None and (not out.exists() or out.stat().st_size == 0 or count(out) < point):
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        killed_at.append(count(out))
    subprocess.run(args, check=True, capture_output=True)
    items = [json.loads(line)["item"] for line in out.open()]
    return {"total": total, "kill_points": points, "lines_when_killed": killed_at, "lines": len(items),
            "unique": len(set(items)), "in_order": items == list(range(total))}  # fmt: skip


def count(path: Path) -> int:
    with open(path, "rb") as f:
        return f.read().count(b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(ROOT / "runs/moderate_marketplace"))
    parser.add_argument("--total", type=int, default=100_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--files", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/moderation_scan.json")
    args = parser.parse_args()
    import vlfuse

    run = vlfuse.load_run(args.run)
    results: dict = {"run": args.run, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        builtin = [timed_scan(args.run, "marketplace:test", tmp / "a.jsonl") for _ in range(3)]
        table = image_file_table(run, tmp, args.files)
        files = [timed_scan(args.run, str(table), tmp / "b.jsonl") for _ in range(3)]
        rates = [r["items_per_s"] for r in builtin]
        file_rates = [r["items_per_s"] for r in files]
        results["throughput"] = {
            "pre_decoded_builtin": {"items": builtin[0]["items"], "items_per_s": rates,
                                    "median": statistics.median(rates)},
            "image_files": {"items": files[0]["items"], "items_per_s": file_rates,
                            "median": statistics.median(file_rates)},
        }  # fmt: skip
        print(json.dumps(results["throughput"], indent=1), flush=True)
        small = timed_scan(args.run, "marketplace:train", tmp / "m.jsonl", "--limit", "20000")
        results["memory"] = {"items_20000_max_rss_mb": small["max_rss_mb"]}
        whole = tmp / "whole.jsonl"
        large = timed_scan(args.run, "marketplace:train", whole, "--limit", str(args.total))
        results["memory"][f"items_{args.total}_max_rss_mb"] = large["max_rss_mb"]
        results["memory"]["note"] = "max RSS of the scanning process, each measured alone"
        killed = killed_scan(args.run, tmp / "killed.jsonl", args.total, args.kills, seed=0)
        killed["same_decisions_as_uninterrupted"] = (tmp / "killed.jsonl").read_bytes() == whole.read_bytes()
        results["kill_resume"] = killed
        print(json.dumps(killed, indent=1), flush=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
