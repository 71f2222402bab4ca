"""Crash-resume pass: `vlfuse train` killed with SIGKILL at random points, then continued, many times over.

Each trial starts a run and kills it (kill -9) one to three times, then lets it finish; after each kill it runs what a
user would: `vlfuse train --resume RUN`, or — when the kill came before the run wrote its config.yaml — the original
command again. Kill points are drawn from three kinds:

- `early`: a random moment before the first checkpoint exists (start-up, data preparation, the first epoch);
- `checkpoint-write`: the moment a temporary checkpoint file appears (the run dir is polled every 0.2 ms);
- `random`: a random moment of the whole run.

Every trial must end with: a finished run, test metrics and final weights identical to an uninterrupted run, one
metrics.jsonl line per epoch (1..E, the same validation figures as the uninterrupted run), no temporary files left.
Results: benchmarks/results/crash_resume.json

    python benchmarks/crash_resume.py [--trials 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

CONFIG = "configs/easy_vqa.yaml"
OVERRIDES = ["data.limit=3000", "data.test_limit=1000", "train.epochs=4", "train.threads=1"]
TIMING_KEYS = {"train_seconds", "train_samples_per_s"}


def vlfuse_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vlfuse.cli", *args]


def train_command(run: Path) -> list[str]:
    return vlfuse_command("train", CONFIG, "--run-dir", str(run), *[f"--set={o}" for o in OVERRIDES])


def continue_command(run: Path) -> list[str]:
    return vlfuse_command("train", "--resume", str(run)) if (run / "config.yaml").is_file() else train_command(run)


def _has_temp_file(run: Path) -> bool:
    folder = run / "checkpoints"
    try:
        return any(name.startswith(".last.safetensors.tmp-") for name in os.listdir(folder))
    except FileNotFoundError:
        return False


def run_and_kill(
    command: list[str], run: Path, kind: str, total_s: float, first_checkpoint_s: float, rng: random.Random
) -> dict:
    """Start `command`, kill it at a point of `kind`; returns what happened (killed or finished first)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = started + rng.uniform(0.0, first_checkpoint_s if kind == "early" else total_s)
    while proc.poll() is None:
        now = time.perf_counter()
        if _has_temp_file(run) if kind == "checkpoint-write" else now >= deadline:
            had_checkpoint = (run / "checkpoints" / "last.safetensors").exists()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return {"kind": kind, "killed_at_s": round(now - started, 3), "killed": True,
                    "checkpoint_existed": had_checkpoint}  # fmt: skip
        time.sleep(0.0002 if kind == "checkpoint-write" else 0.005)
    return {"kind": kind, "killed": False, "exit_code": proc.returncode}


def epoch_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def outcome(run: Path, reference: Path) -> dict:
    """How a finished trial compares with the uninterrupted reference run."""
    log, ref_log = epoch_log(run), epoch_log(reference)
    strip = [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in log]
    ref_strip = [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in ref_log]
    weights, ref_weights = load_file(str(run / "model.safetensors")), load_file(str(reference / "model.safetensors"))
    return {
        "finished": (run / "run.json").is_file(),
        "epochs_logged": [r["epoch"] for r in log],
        "log_identical": strip == ref_strip,
        "test_metrics_identical": json.loads((run / "test_metrics.json").read_text())
        == json.loads((reference / "test_metrics.json").read_text()),
        "weights_identical": weights.keys() == ref_weights.keys()
        and all(bool((weights[k] == ref_weights[k]).all()) for k in weights),
        "temp_files_left": [str(p.relative_to(run)) for p in run.rglob(".*.tmp-*")],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/crash_resume")
    parser.add_argument("--out", default="benchmarks/results/crash_resume.json")
    args = parser.parse_args()
    work = Path(args.work)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    reference = work / "reference"
    started = time.perf_counter()
    proc, first_checkpoint_s = subprocess.Popen(train_command(reference), stdout=subprocess.DEVNULL), None
    while proc.poll() is None:
        if first_checkpoint_s is None and (reference / "checkpoints" / "last.safetensors").exists():
            first_checkpoint_s = time.perf_counter() - started
        time.sleep(0.005)
    total_s = time.perf_counter() - started
    if proc.returncode != 0 or first_checkpoint_s is None:
        raise SystemExit(f"the uninterrupted run failed (exit code {proc.returncode})")
    print(f"uninterrupted run: {total_s:.1f} s, first checkpoint after {first_checkpoint_s:.1f} s", flush=True)
    rng = random.Random(args.seed)
    kinds = ["early", "checkpoint-write", "random"]
    trials = []
    for trial in range(args.trials):
        run = work / f"trial-{trial:02d}"
        kills = []
        for attempt in range(rng.randint(1, 3)):
            command = train_command(run) if attempt == 0 else continue_command(run)
            kills.append(run_and_kill(command, run, kinds[(trial + attempt) % 3], total_s, first_checkpoint_s, rng))
        final = subprocess.run(continue_command(run), capture_output=True, text=True)
        compared = outcome(run, reference) if final.returncode == 0 else {"error": final.stderr[-2000:]}
        result = {"trial": trial, "kills": kills, "final_exit_code": final.returncode, **compared}
        result["ok"] = final.returncode == 0 and all(
            [result["finished"], result["log_identical"], result["test_metrics_identical"],
             result["weights_identical"], not result["temp_files_left"]]
        )  # fmt: skip
        trials.append(result)
        print(json.dumps({k: result[k] for k in ("trial", "ok", "kills")}), flush=True)
    killed = [k for t in trials for k in t["kills"] if k["killed"]]
    summary = {
        "trials": len(trials),
        "ok": sum(t["ok"] for t in trials),
        "kills": len(killed),
        "kills_by_kind": {kind: sum(k["kind"] == kind for k in killed) for kind in kinds},
        "kills_before_first_checkpoint": sum(not k["checkpoint_existed"] for k in killed),
        "kills_during_checkpoint_write": sum(k["kind"] == "checkpoint-write" for k in killed),
        "uninterrupted_seconds": round(total_s, 1),
        "first_checkpoint_seconds": round(first_checkpoint_s, 1),
        "config": CONFIG,
        "overrides": OVERRIDES,
    }
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"summary": summary, "commit": commit,
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
              "trials": trials, "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
