"""Train a dual encoder with the shared Trainer and write a run directory like every other vlfuse run.

Run directory: config.yaml (task: retrieval), labels.json (keys, held-out keys), tokenizer.json,
model.safetensors (best by validation mean recall@1), checkpoints/last.safetensors (exact resume), metrics.jsonl,
tensorboard/, test_metrics.json (retrieval metrics per split and zero-shot accuracy), report.md,
plots/learning_curves.png, data_issues.json, run.json.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from vlfuse.config import save_config
from vlfuse.data.captions import caption_templates
from vlfuse.data.loader import BatchLoader
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.errors import ConfigError
from vlfuse.evaluate.report import plot_learning_curves, write_report
from vlfuse.model import count_parameters
from vlfuse.retrieval.config import RetrievalConfig
from vlfuse.retrieval.data import RetrievalData, caption_rows, prepare_retrieval_data
from vlfuse.retrieval.embed import embed_images, evaluate_captioned
from vlfuse.retrieval.loss import contrastive_loss, positive_mask
from vlfuse.retrieval.model import DualEncoder, build_dual_encoder
from vlfuse.retrieval.zeroshot import evaluate_zeroshot, label_embeddings
from vlfuse.train.checkpoint import claim_run_dir, load_model_weights
from vlfuse.train.trainer import BEST_WEIGHTS, Callback, MetricsLogger, Trainer
from vlfuse.types import Batch

log = logging.getLogger(__name__)

MONITOR = "mean_r1"


def build_for_run(cfg: RetrievalConfig, tokenizer) -> DualEncoder:
    """The run's dual encoder, sizes derived from the data settings and the trained tokenizer."""
    return build_dual_encoder(
        cfg.model, in_channels=cfg.data.channels, image_size=cfg.data.image_size, vocab_size=tokenizer.vocab_size,
        pad_id=tokenizer.pad_id, max_length=cfg.data.max_text_length,
    )  # fmt: skip


def contrastive_step(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The training loss of one batch: rows match when they share a key (batch.label) or an image."""
    out = model(batch)
    return contrastive_loss(out.image, out.text, out.logit_scale, positive_mask(batch.label, batch.image_index))


def train_retrieval(
    cfg: RetrievalConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    callbacks: list[Callback] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train `cfg` into `run_dir` (or continue it with resume=True); return the run summary.

    Raises:
        ConfigError: launched with several processes (contrastive training here is single-process).
        CheckpointError: `run_dir` already holds a run and neither resume nor overwrite was asked for.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("task: retrieval trains in one process (negatives are not gathered across processes)")
    claim_run_dir(run_dir, resume=resume, overwrite=overwrite)
    from vlfuse.train.experiment import resolve_device

    device = resolve_device(cfg.train.device)
    torch.set_num_threads(cfg.train.threads or max(1, os.cpu_count() or 1))
    run_dir.mkdir(parents=True, exist_ok=True)
    from vlfuse.data.text import TextTokenizer

    saved = run_dir / "tokenizer.json"
    data = prepare_retrieval_data(cfg, tokenizer=TextTokenizer.load(saved) if resume and saved.is_file() else None)
    prep_seconds = time.perf_counter() - started
    if not resume:
        save_config(cfg, run_dir / "config.yaml")
        data.tokenizer.save(saved)
        labels = {"task": "retrieval", "dataset": cfg.data.name, "label_names": data.keys, "heldout": data.heldout}
        (run_dir / "labels.json").write_text(json.dumps(labels, indent=1))
        (run_dir / "data_issues.json").write_text(json.dumps([i.__dict__ for i in data.issues], indent=1))

    torch.manual_seed(cfg.seed)
    model = build_for_run(cfg, data.tokenizer).to(device)
    eval_prep = ImagePreprocessor(cfg.data, augment=False)
    rows = caption_rows(data.train, data.key_ids(data.train), data.tokenizer)
    loader = BatchLoader(rows, ImagePreprocessor(cfg.data, augment=True), batch_size=cfg.train.batch_size,
                         shuffle=True, seed=cfg.seed, drop_last=True)  # fmt: skip
    val_keys = data.key_ids(data.val)

    def evaluate_fn(m: torch.nn.Module) -> dict[str, float]:
        return evaluate_captioned(m, data.val, val_keys, data.tokenizer, eval_prep,
                                  batch_size=cfg.train.eval_batch_size, device=device)  # fmt: skip

    trainer = Trainer(
        model=model, train_loader=loader, loss_fn=contrastive_step, evaluate_fn=evaluate_fn, monitor=MONITOR,
        cfg=cfg.train, run_dir=run_dir, device=device,
        callbacks=[MetricsLogger(run_dir, cfg.train.log_every), *(callbacks or [])],
    )  # fmt: skip
    if resume:
        trainer.resume()
    state = trainer.fit(stop_after_epochs=stop_after_epochs)
    finished = state.epoch >= cfg.train.epochs or state.stopped_early
    summary: dict[str, Any] = {
        "run_dir": str(run_dir), "task": "retrieval", "complete": finished, "epochs": state.epoch,
        "best_epoch": state.best_epoch, "stopped_early": state.stopped_early, "parameters": count_parameters(model),
        "train_pairs": len(rows), "data_seconds": round(prep_seconds, 2), "skipped_rows": len(data.issues),
        "first_skipped": [str(issue) for issue in data.issues[:5]],
    }  # fmt: skip
    if finished:
        summary["metrics"] = finish_retrieval_run(cfg, run_dir, data, model, state.history, device)
        summary["total_seconds"] = round(time.perf_counter() - started, 2)
        (run_dir / "run.json").write_text(json.dumps(summary, indent=1))
    return summary


def zeroshot_metrics(
    cfg: RetrievalConfig, data: RetrievalData, model: DualEncoder, image_emb: torch.Tensor
) -> dict[str, dict[str, float]]:
    """Zero-shot accuracy on the test images from the held-out templates: over all keys, and (with held-out keys)
    on the held-out keys' images, choosing among all keys and among the held-out keys only."""
    if cfg.data.name == "table" or data.test is None:
        return {}
    templates = caption_templates(cfg.data.name, "heldout")
    label_emb = label_embeddings(model, data.tokenizer, data.keys, templates, cfg.data.name)  # (K, E)
    out = {"zeroshot": evaluate_zeroshot(image_emb, data.test.keys, label_emb, data.keys)}
    if data.heldout:
        held = set(data.heldout)
        rows = [i for i, k in enumerate(data.test.keys) if k in held]
        keys = [data.test.keys[i] for i in rows]
        out["zeroshot_heldout_all_labels"] = evaluate_zeroshot(image_emb[rows], keys, label_emb, data.keys)
        slot = [data.keys.index(k) for k in data.heldout]
        out["zeroshot_heldout_only"] = evaluate_zeroshot(image_emb[rows], keys, label_emb[slot], data.heldout)
        seen = [i for i, k in enumerate(data.test.keys) if k not in held]
        seen_keys = [data.test.keys[i] for i in seen]
        out["zeroshot_seen"] = evaluate_zeroshot(image_emb[seen], seen_keys, label_emb, data.keys)
    return out


def finish_retrieval_run(
    cfg: RetrievalConfig, run_dir: Path, data: RetrievalData, model: DualEncoder, history: list[dict[str, Any]],
    device: torch.device,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Reload the best weights, score val and test (retrieval and zero-shot), write test_metrics.json and report."""
    load_model_weights(model, run_dir / BEST_WEIGHTS)
    prep = ImagePreprocessor(cfg.data, augment=False)
    metrics: dict[str, dict[str, float]] = {}
    for name, split in (("val", data.val), ("test", data.test)):
        if split is not None and len(split):
            metrics[name] = evaluate_captioned(model, split, data.key_ids(split), data.tokenizer, prep,
                                               batch_size=cfg.train.eval_batch_size, device=device)  # fmt: skip
    if data.test is not None:
        image_emb = embed_images(model, data.test.images, prep, batch_size=cfg.train.eval_batch_size, device=device)
        metrics |= zeroshot_metrics(cfg, data, model, image_emb)
    (run_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=1))
    plots_dir = run_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    plot_learning_curves(history, plots_dir / "learning_curves.png", MONITOR)
    throughput = [r["train_samples_per_s"] for r in history]
    summary = {
        "dataset": cfg.data.name, "task": "retrieval (contrastive dual encoder)",
        "model": f"{cfg.model.image_encoder.name} + {cfg.model.text_encoder.name} → {cfg.model.embed_dim}-d",
        "frozen towers": ", ".join(k for k, v in model.frozen.items() if v) or "none",
        "parameters (trainable)": f"{count_parameters(model):,}", "training images": len(data.train),
        "held-out keys": ", ".join(data.heldout) or "none",
        "temperature (learned)": f"{1 / model.logit_scale.item():.4f}", "epochs trained": len(history),
        "training pairs/s (mean)": f"{sum(throughput) / max(1, len(throughput)):.0f}",
    }  # fmt: skip
    write_report(run_dir, title=f"vlfuse retrieval run: {run_dir.name}", summary=summary, metrics=metrics,
                 history=history, issues=[str(i) for i in data.issues],
                 plots=[("Learning curves", "plots/learning_curves.png")])  # fmt: skip
    return metrics
