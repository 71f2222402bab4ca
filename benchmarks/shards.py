"""Data larger than memory, measured (issue: WebDataset shards, streaming training, multi-node). Parts, each adding its
section to benchmarks/results/shards.json:

- pack:       `vlfuse data pack easy-vqa` at 1 copy, ~100k rows (3 copies) and ~1M rows (29 augmented copies); rows/s
- memory:     peak RSS (training process + its DataLoader workers) streaming the default config for the same number of
              steps from the 100k-row and the 1M-row packs (target: within +10 %)
- throughput: rows/s the shard loader delivers with 2 workers vs rows/s the training step consumes (target ≥ 3×), and
              one epoch of the default config from shards (workers: auto, 1, 2) vs in memory (target: within 20 %)
- resume:     an epoch read whole vs cut after k batches and resumed: rows repeated / skipped
- nodes:      the default config single-process (seeds 0, 1, 2: run-to-run noise) vs two `--nnodes 2` launches on
              localhost, one process each
- elastic:    `--nproc 2 --max-restarts 1`, one worker SIGKILLed after the first mid-epoch checkpoint

    python benchmarks/shards.py --parts pack,memory,throughput,resume,nodes,elastic --work /tmp/vlfuse-shards
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

RESULTS = Path("benchmarks/results/shards.json")
CONFIG = "configs/easy_vqa.yaml"
VLFUSE = [sys.executable, "-m", "vlfuse.cli"]


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_watched(cmd: list[str], **kw) -> tuple[subprocess.CompletedProcess, float, int]:
    """Run `cmd`; return it, its wall seconds and the peak RSS of its whole process tree (sampled every 0.1 s)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    watched, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(watched))
        time.sleep(0.1)
    out = proc.stdout.read()
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, "")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out[-3000:]}")
    return done, time.perf_counter() - start, peak


def part_pack(work: Path) -> dict:
    out = {}
    for name, repeat in (("1x", 1), ("100k", 3), ("1M", 29)):
        target = work / f"easy-vqa-{name}"
        if (target / "index.json").exists():
            index = json.loads((target / "index.json").read_text())
        else:
            cmd = [*VLFUSE, "data", "pack", "easy-vqa", "--out", str(target), "--repeat", str(repeat),
                   "--shard-size", "64MB", "--set", "data.augment.hflip=true",
                   "--set", "data.augment.translate=0.05"]  # fmt: skip
            run_watched(cmd)
            index = json.loads((target / "index.json").read_text())
        train = index["splits"]["train"]
        rows = sum(s["rows"] for s in index["splits"].values())
        size = sum(p.stat().st_size for p in target.glob("*.tar"))
        out[name] = {"copies": repeat, "train_rows": train["rows"], "train_samples": train["samples"],
                     "all_rows": rows, "shards": sum(len(s["shards"]) for s in index["splits"].values()),
                     "bytes": size, "seconds": index["packed_seconds"],
                     "rows_per_s": round(rows / index["packed_seconds"], 1)}  # fmt: skip
        print(name, out[name], flush=True)
    return out


def _train(work: Path, name: str, *sets: str, extra: tuple[str, ...] = ()) -> tuple[dict, float, int]:
    run = work / "runs" / name
    cmd = [*VLFUSE, "train", CONFIG, "--run-dir", str(run), "--overwrite", *extra]
    for s in sets:
        cmd += ["--set", s]
    _, seconds, peak = run_watched(cmd)
    return json.loads((run / "run.json").read_text()), seconds, peak


def part_memory(work: Path) -> dict:
    out = {}
    for name in ("100k", "1M"):
        summary, seconds, peak = _train(work, f"memory-{name}", f"data.shards={work / f'easy-vqa-{name}'}",
                                        "train.epochs=1", "data.stream.samples_per_epoch=100000")  # fmt: skip
        out[name] = {"peak_rss_mb": round(peak / 2**20, 1), "seconds": round(seconds, 1),
                     "test_accuracy": summary["metrics"]["test"]["accuracy"]}  # fmt: skip
        print(name, out[name], flush=True)
    out["ratio_1M_over_100k"] = round(out["1M"]["peak_rss_mb"] / out["100k"]["peak_rss_mb"], 3)
    return out


def part_throughput(work: Path, batches: int = 150) -> dict:
    import torch

    from vlfuse.classify.run import build_classifier
    from vlfuse.classify.sharded import open_sharded
    from vlfuse.data.loader import BatchLoader
    from vlfuse.data.prepare import prepare_data
    from vlfuse.data.shards import SampleDecoder, ShardLoader, loader_workers
    from vlfuse.data.transforms import ImagePreprocessor
    from vlfuse.objective import Objective
    from vlfuse.task import load_config
    from vlfuse.train.trainer import build_optimizer

    cfg = load_config(CONFIG, [f"data.shards={work / 'easy-vqa-1x'}", "data.stream.workers=2"])
    index, data = open_sharded(cfg.data.shards, None, cfg.data.max_text_length)
    decode = SampleDecoder(cfg.data, data.tokenizer, data.label_names, data.objective, augment=True,
                           stored_ids_length=index.stored_ids_length(data.tokenizer))
    loader = ShardLoader(index, cfg.data, decode, batch_size=cfg.train.batch_size, seed=0)
    loader.set_epoch(0)
    rows, start = 0, None
    for number, batch in enumerate(loader):
        if number == 10:  # workers started and warm
            rows, start = 0, time.perf_counter()
        rows += len(batch)
        if number == batches + 10:
            break
    delivered = rows / (time.perf_counter() - start)
    # what one training step consumes, on in-memory batches (data cost excluded)
    mem = prepare_data(cfg.data.model_copy(update={"shards": None}), seed=0)
    model = build_classifier(cfg, mem.tokenizer, len(mem.label_names))
    objective = Objective("multiclass", len(mem.label_names))
    optimizer = build_optimizer(model, cfg.train)
    plain = BatchLoader(mem.train, ImagePreprocessor(cfg.data, augment=True), batch_size=cfg.train.batch_size,
                        shuffle=True, drop_last=True, group_by_image=True)  # fmt: skip
    ready = [b for _, b in zip(range(batches + 10), plain, strict=False)]
    rows = 0
    for number, batch in enumerate(ready):
        if number == 10:
            rows, start = 0, time.perf_counter()
        loss = objective.loss(model(batch), batch.label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        rows += len(batch)
    consumed = rows / (time.perf_counter() - start)
    out = {"loader_rows_per_s_2_workers": round(delivered, 1), "train_step_rows_per_s": round(consumed, 1),
           "ratio": round(delivered / consumed, 2), "threads": torch.get_num_threads()}  # fmt: skip
    print(out, flush=True)
    # epoch time: the variants alternate, 3 rounds of 3 epochs each (this machine's speed drifts by 20-30 % over
    # minutes, so only runs side by side compare); epoch 1 (oneDNN warm-up) is left out
    shards = f"data.shards={work / 'easy-vqa-1x'}"
    variants = (("memory", ()), ("shards_auto", (shards,)), ("shards_2_workers", (shards, "data.stream.workers=2")))
    seconds: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _ in range(3):
        for name, sets in variants:
            _train(work, f"epoch-{name}", "train.epochs=3", *sets)
            history = [json.loads(line) for line in (work / "runs" / f"epoch-{name}" / "metrics.jsonl").open()]
            seconds[name] += [round(r["train_seconds"], 2) for r in history[1:]]
        print({k: v[-2:] for k, v in seconds.items()}, flush=True)
    epochs: dict = {"workers_auto_here": loader_workers("auto", 1)}
    for name, _ in variants:
        epochs[name] = {"epoch_seconds": seconds[name], "median": statistics.median(seconds[name])}
    for name, _ in variants[1:]:
        ratios = [a / b for a, b in zip(seconds[name], seconds["memory"], strict=True)]  # paired: same round
        epochs[f"{name}_over_memory"] = {"median": round(statistics.median(ratios), 3),
                                         "min": round(min(ratios), 3), "max": round(max(ratios), 3)}  # fmt: skip
    return {"loader_vs_step": out, "epoch_time": epochs}


def part_resume(work: Path) -> dict:
    from collections import Counter

    from vlfuse.classify.sharded import open_sharded
    from vlfuse.data.shards import SampleDecoder, ShardLoader
    from vlfuse.task import load_config

    cfg = load_config(CONFIG, [f"data.shards={work / 'easy-vqa-1x'}"])
    index, data = open_sharded(cfg.data.shards, None, cfg.data.max_text_length)
    decode = SampleDecoder(cfg.data, data.tokenizer, data.label_names, data.objective, augment=False,
                           stored_ids_length=index.stored_ids_length(data.tokenizer))
    loader = ShardLoader(index, cfg.data, decode, batch_size=cfg.train.batch_size, seed=0)
    loader.set_epoch(3)

    def key(batch):  # (source row, copy of the image) identifies a training row; rows repeat only by resampling
        return [int(r) for r in batch.index]

    whole = [key(b) for b in loader]
    out = {}
    for cut in (1, len(whole) // 3, len(whole) // 2 + 1):
        loader.set_epoch(3)
        loader.skip_batches(cut)
        resumed = whole[:cut] + [key(b) for b in loader]
        reference, got = Counter(r for b in whole for r in b), Counter(r for b in resumed for r in b)
        out[f"cut_after_{cut}_batches"] = {
            "identical_batches": resumed == whole,
            "rows_repeated": sum((got - reference).values()), "rows_skipped": sum((reference - got).values()),
        }  # fmt: skip
    out["batches_per_epoch"] = len(whole)
    print(out, flush=True)
    return out


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def part_nodes(work: Path) -> dict:
    single = {}
    for seed in (0, 1, 2):
        summary, seconds, _ = _train(work, f"single-{seed}", f"seed={seed}")
        single[seed] = {"test_accuracy": summary["metrics"]["test"]["accuracy"], "seconds": round(seconds, 1)}
        print("single", seed, single[seed], flush=True)
    run = work / "runs" / "two-nodes"
    port = _port()
    start = time.perf_counter()
    nodes = [subprocess.Popen([*VLFUSE, "train", CONFIG, "--run-dir", str(run), "--overwrite", "--nnodes", "2",
                               "--node-rank", str(rank), "--rdzv-endpoint", f"localhost:{port}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]  # fmt: skip
    outputs = [n.communicate()[0] for n in nodes]
    if any(n.returncode for n in nodes):
        raise SystemExit("two-node run failed:\n" + outputs[0][-2000:] + outputs[1][-2000:])
    summary = json.loads((run / "run.json").read_text())
    two = {"test_accuracy": summary["metrics"]["test"]["accuracy"], "processes": summary["processes"],
           "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    accs = [v["test_accuracy"] for v in single.values()]
    print("two nodes", two, flush=True)
    return {"single_process_by_seed": single, "two_nodes_seed_0": two,
            "single_seed_spread": round(max(accs) - min(accs), 4),
            "difference_seed_0": round(two["test_accuracy"] - single[0]["test_accuracy"], 4)}  # fmt: skip


def part_elastic(work: Path) -> dict:
    run = work / "runs" / "elastic"
    cmd = [*VLFUSE, "train", CONFIG, "--run-dir", str(run), "--overwrite", "--nproc", "2", "--max-restarts", "1",
           "--set", "train.checkpoint_every=50", "--set", "train.epochs=4"]  # fmt: skip
    shutil.rmtree(run, ignore_errors=True)  # an earlier run's checkpoint must not count as this one's
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = run / "checkpoints" / "last.safetensors"
    while not checkpoint.exists() and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(3)  # a few steps past the checkpoint: those are lost and redone
    agent = next(p for p in psutil.Process(proc.pid).children(recursive=True)
                 if "torch.distributed.run" in p.cmdline())  # fmt: skip
    victim = agent.children()[0].pid  # a training process (its own DataLoader workers are its children)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.perf_counter() - start
    output = proc.communicate()[0]
    if proc.returncode != 0:
        raise SystemExit("elastic run failed:\n" + output[-3000:])
    summary = json.loads((run / "run.json").read_text())
    out = {"killed_worker_after_s": round(killed_at, 1), "restarted": "restarted after a failed process" in output,
           "complete": summary["complete"], "epochs": summary["epochs"],
           "test_accuracy": summary["metrics"]["test"]["accuracy"], "seconds": round(time.perf_counter() - start, 1)}
    print(out, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="pack,memory,throughput,resume,nodes,elastic")
    parser.add_argument("--work", default="/tmp/vlfuse-shards")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    parts = {"pack": part_pack, "memory": part_memory, "throughput": part_throughput, "resume": part_resume,
             "nodes": part_nodes, "elastic": part_elastic}  # fmt: skip
    for name in args.parts.split(","):
        results[name] = parts[name](work)
        results["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
        RESULTS.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
