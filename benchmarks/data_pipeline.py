"""Does the data pipeline keep up with training? Measures, in one run:

- pipeline: samples/s the BatchLoader delivers (index gather + uint8→float + kornia augmentation + normalise),
- training: samples/s one training step consumes (forward + backward + AdamW step) on the same batches,

and reports their ratio (target ≥ 3×). Results: benchmarks/results/data_pipeline.json

    python benchmarks/data_pipeline.py [--config configs/easy_vqa.yaml] [--batches 60]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from vlfuse.classify.run import build_classifier
from vlfuse.data.loader import BatchLoader
from vlfuse.data.prepare import prepare_data
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.objective import Objective
from vlfuse.task import load_config
from vlfuse.train.trainer import build_optimizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/easy_vqa.yaml")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--out", default="benchmarks/results/data_pipeline.json")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    cfg = load_config(args.config)
    data = prepare_data(cfg.data, seed=cfg.seed)
    loader = BatchLoader(data.train, ImagePreprocessor(cfg.data, augment=True), batch_size=cfg.train.batch_size,
                         shuffle=True, seed=0, drop_last=True, group_by_image=cfg.train.group_by_image)  # fmt: skip
    n = min(args.batches, len(loader))

    batches = []
    start = time.perf_counter()
    for i, batch in enumerate(loader):
        if i == n:
            break
        batches.append(batch)
    pipeline_s = time.perf_counter() - start
    samples = sum(len(b) for b in batches)

    objective = Objective(data.objective, len(data.label_names))
    torch.manual_seed(0)
    model = build_classifier(cfg, data.tokenizer, objective.num_outputs)
    optimizer = build_optimizer(model, cfg.train)
    model.train()
    for batch in batches[:3]:  # warm-up
        objective.loss(model(batch), batch.label).backward()
        optimizer.zero_grad()
    start = time.perf_counter()
    for batch in batches:
        loss = objective.loss(model(batch), batch.label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    train_s = time.perf_counter() - start

    result = {
        "config": args.config,
        "batch_size": cfg.train.batch_size,
        "group_by_image": cfg.train.group_by_image,
        "batches": n,
        "pipeline_samples_per_s": round(samples / pipeline_s, 1),
        "train_step_samples_per_s": round(samples / train_s, 1),
        "ratio": round(train_s / pipeline_s, 2),
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
