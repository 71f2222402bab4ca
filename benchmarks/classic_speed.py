"""The classic model's training throughput: vlfuse against Keras, on a quiet machine and beside a busy neighbour.

    python benchmarks/classic_speed.py [--reps 2] [--epochs 3] [--rows 8000]

Setup once: `python -m venv benchmarks/peer/.venv && benchmarks/peer/.venv/bin/pip install -r
benchmarks/peer/requirements.txt` (TensorFlow's CPU wheel and Keras, kept out of vlfuse's environment).

Two shapes: easy-VQA (64×64×3 images, 16-token questions) and the seed example's (28×28×1 images, 100-token texts:
fashion-mnist-pairs with `max_text_length: 100`), batch 32, Adam 1e-3. Contestants, each a fresh process, run in
turns (A B C D A B C D …) so that drift in the machine's speed falls on all of them:

- `vlfuse`: `vlfuse train configs/easy_vqa_classic.yaml` as shipped (the fused conv kernel, the thread policy,
  `train.precision: auto`, which is bf16 autocast on a CPU with native bf16);
- `vlfuse-fp32`: the same with `train.precision=fp32`;
- `vlfuse-unfused`: fp32 with `model.image_encoder.fused=false` (PyTorch's conv, ReLU and pool: the "before");
- `keras-masked`: the same model in Keras 3 / TensorFlow, `Embedding(mask_zero=True)` so the LSTM ends at the
  last real token as vlfuse's LSTM does (the same function);
- `keras-padded`: Keras over the padded sequence, as most tutorials write it (a different function, often faster).

Every contestant trains on the same rows (the arrays are exported from vlfuse's prepared training split) and is
timed on its epochs after the first (which includes tracing and compiling). "busy" runs one other process spinning
on one core for the whole measurement. Writes benchmarks/results/classic_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PEER_PYTHON = ROOT / "benchmarks" / "peer" / ".venv" / "bin" / "python"
CONFIG = ROOT / "configs" / "easy_vqa_classic.yaml"
SHAPES = {
    "easy-vqa 64×64×3, 16 tokens": [],
    "seed 28×28×1, 100 tokens": ["data.name=fashion-mnist-pairs", "data.image_size=28", "data.channels=1",
                                 "data.max_text_length=100"],
}  # fmt: skip
CONTESTANTS = ("vlfuse", "vlfuse-fp32", "vlfuse-unfused", "keras-masked", "keras-padded")


def export_arrays(overrides: list[str], rows: int, out: Path) -> tuple[int, int]:
    """vlfuse's prepared training split → npz (images NHWC float32 in [0, 1], token ids, labels); (rows, vocab)."""
    from vlfuse.data.prepare import prepare_data
    from vlfuse.task import load_config

    cfg = load_config(CONFIG, [*overrides, f"data.limit={rows}"])
    data = prepare_data(cfg.data, seed=cfg.seed)
    split = data.train
    images = split.images[split.image_index].permute(0, 2, 3, 1).float().div(255).numpy()  # (N, H, W, C)
    np.savez(out, images=images, tokens=split.token_ids.numpy(), labels=split.labels.numpy())
    return len(images), data.tokenizer.vocab_size


def run_vlfuse(overrides: list[str], rows: int, epochs: int, work: Path, contestant: str) -> dict:
    run_dir = work / "run"
    sets = [*overrides, f"data.limit={rows}", f"train.epochs={epochs}"]
    if contestant != "vlfuse":
        sets.append("train.precision=fp32")
    if contestant == "vlfuse-unfused":
        sets.append("model.image_encoder.fused=false")
    command = [sys.executable, "-m", "vlfuse.cli", "train", str(CONFIG), "--run-dir", str(run_dir), "--overwrite"]
    subprocess.run([*command, *[f"--set={s}" for s in sets]], check=True, capture_output=True)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"samples_per_s": [r["train_samples_per_s"] for r in records[1:]],
            "threads": [r["threads"] for r in records]}  # fmt: skip


def run_keras(arrays: Path, vocab: int, epochs: int, masked: bool) -> dict:
    command = [str(PEER_PYTHON), str(ROOT / "benchmarks" / "peer" / "keras_classic.py"), "--data", str(arrays),
               "--vocab", str(vocab), "--epochs", str(epochs), *(["--mask"] if masked else [])]  # fmt: skip
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def others_load(seconds: float = 0.5) -> float:
    from vlfuse.threads import others_load as load_between
    from vlfuse.threads import read_cpu

    before = read_cpu()
    time.sleep(seconds)
    return load_between(before, read_cpu())


def measure(shape: str, overrides: list[str], args: argparse.Namespace, work: Path, busy: bool) -> dict:
    arrays = work / "arrays.npz"
    rows, vocab = export_arrays(overrides, args.rows, arrays)
    rates: dict[str, list[float]] = {c: [] for c in CONTESTANTS}
    threads: list[list[int]] = []
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        background = others_load()
        for _ in range(args.reps):
            for contestant in CONTESTANTS:
                if contestant.startswith("vlfuse"):
                    result = run_vlfuse(overrides, args.rows, args.epochs, work, contestant)
                    if contestant == "vlfuse":
                        threads.append(result["threads"])
                else:
                    result = run_keras(arrays, vocab, args.epochs, masked=contestant == "keras-masked")
                rates[contestant] += result["samples_per_s"]
                print(f"  {shape} {'busy' if busy else 'quiet'} {contestant}: "
                      f"{', '.join(f'{r:,.0f}' for r in result['samples_per_s'])} samples/s", flush=True)  # fmt: skip
    finally:
        if neighbour is not None:
            neighbour.kill()
    summary = {c: {"median": statistics.median(v), "min": min(v), "max": max(v), "epochs": v} for c, v in rates.items()}
    best_keras = max(summary["keras-masked"]["median"], summary["keras-padded"]["median"])
    return {
        "rows": rows, "others_load_at_start": round(background, 2), "vlfuse_threads_per_epoch": threads,
        "samples_per_s": summary,
        "vlfuse_over_best_keras": summary["vlfuse"]["median"] / best_keras,
        "vlfuse_over_keras_masked": summary["vlfuse"]["median"] / summary["keras-masked"]["median"],
        "fused_over_unfused": summary["vlfuse-fp32"]["median"] / summary["vlfuse-unfused"]["median"],
        "best_vlfuse_over_best_keras": max(summary["vlfuse"]["median"], summary["vlfuse-fp32"]["median"]) / best_keras,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2, help="turns per contestant")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is not timed)")
    parser.add_argument("--rows", type=int, default=8000, help="training rows (data.limit)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "classic_speed.json")
    args = parser.parse_args()
    if not PEER_PYTHON.exists():
        sys.exit(f"no peer environment at {PEER_PYTHON}: see this script's docstring")
    import platform

    from vlfuse.train.precision import cpu_flags

    results: dict = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "avx512": any(f.startswith("avx512") for f in cpu_flags()),
                    "native_bf16": bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))},
        "batch_size": 32, "epochs_timed": args.epochs - 1, "reps": args.reps, "shapes": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for shape, overrides in SHAPES.items():
            results["shapes"][shape] = {}
            for busy in (False, True):
                results["shapes"][shape]["busy" if busy else "quiet"] = measure(shape, overrides, args, Path(tmp), busy)
    args.out.write_text(json.dumps(results, indent=1))
    for shape, modes in results["shapes"].items():
        for mode, r in modes.items():
            print(
                f"{shape} {mode}: vlfuse {r['samples_per_s']['vlfuse']['median']:,.0f} samples/s = "
                f"{r['vlfuse_over_best_keras']:.2f}× the faster Keras (fastest vlfuse: "
                f"{r['best_vlfuse_over_best_keras']:.2f}×), fused {r['fused_over_unfused']:.2f}× unfused (fp32)"
            )


if __name__ == "__main__":
    main()
