"""One experiment end to end: prepare data, build the model, train, test, and write the run directory.

Run directory layout:
    config.yaml            resolved config (everything needed to rebuild the model)
    labels.json            task kind and label names in id order
    tokenizer.json         the tokenizer trained on the training texts (when the data has text)
    model.safetensors      best weights (by validation metric)
    checkpoints/last.safetensors   full training state for --resume
    metrics.jsonl, tensorboard/    per-epoch metrics
    test_metrics.json, report.md, plots/*.png, data_issues.json, run.json
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from vlfuse.config import ExperimentConfig, save_config
from vlfuse.data.dataset import PreparedData, prepare_data
from vlfuse.data.loader import BatchLoader
from vlfuse.data.text import TextTokenizer
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.evaluate.predict import evaluate_split
from vlfuse.evaluate.report import plot_confusion_matrix, plot_learning_curves, write_report
from vlfuse.features import cached_features
from vlfuse.model import add_missing_modality_rows, build_experiment_model, count_parameters
from vlfuse.tasks import Task, confusion_matrix
from vlfuse.train.checkpoint import claim_run_dir, load_model_weights
from vlfuse.train.distributed import DistContext, init_distributed, shutdown_distributed
from vlfuse.train.trainer import BEST_WEIGHTS, Callback, MetricsLogger, Trainer

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name} but CUDA is not available on this machine")
    return torch.device(name)


def pretrained_tokenizer_for(cfg: ExperimentConfig) -> TextTokenizer | None:
    """The tokenizer a pretrained text encoder (e.g. minilm) reads, or None: train one on the data."""
    encoder = cfg.model.text_encoder
    if encoder is None or not hasattr(encoder, "pretrained_tokenizer"):
        return None
    return TextTokenizer.pretrained(encoder.pretrained_tokenizer(), max_length=cfg.data.max_text_length)


def attach_cached_features(cfg: ExperimentConfig, model: torch.nn.Module, data: PreparedData) -> None:
    """With a frozen, cacheable image tower and train.cache_features, give every split its cached image features,
    so no epoch (or evaluation) runs the tower again; see `vlfuse.features`."""
    encoder = getattr(model, "image_encoder", None)
    if not cfg.train.cache_features or encoder is None or not getattr(encoder, "frozen", False):
        return
    if not hasattr(encoder, "cache_key"):
        return
    if cfg.data.augment.model_dump(exclude_defaults=True):
        log.info("image augmentation is off: the frozen image tower reads cached features (train.cache_features)")
    preprocess = ImagePreprocessor(cfg.data, augment=False)
    for split in (data.train, data.val, data.test):
        if split is not None and split.images is not None:
            split.image_features = cached_features(encoder, split.images, preprocess)


def model_for_data(cfg: ExperimentConfig, data: PreparedData, task: Task) -> torch.nn.Module:
    """Build the configured model with sizes derived from the prepared data."""
    return build_experiment_model(cfg, data.tokenizer, task.num_outputs)


def write_run_metadata(run_dir: Path, cfg: ExperimentConfig, data: PreparedData) -> None:
    save_config(cfg, run_dir / "config.yaml")
    labels = {"task": data.task, "label_names": data.label_names}
    (run_dir / "labels.json").write_text(json.dumps(labels, indent=1))
    if data.tokenizer is not None:
        data.tokenizer.save(run_dir / "tokenizer.json")
    issues = [issue.__dict__ for issue in data.issues]
    (run_dir / "data_issues.json").write_text(json.dumps(issues, indent=1))


def train_experiment(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    callbacks: list[Callback] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train `cfg` into `run_dir` (or continue it with resume=True); return the run summary.

    A `task: retrieval` config is trained by `vlfuse.retrieval.train.train_retrieval` (same arguments and summary).
    """
    if getattr(cfg, "task", "classify") == "retrieval":
        from vlfuse.retrieval.train import train_retrieval

        return train_retrieval(cfg, run_dir, resume=resume, stop_after_epochs=stop_after_epochs, callbacks=callbacks,
                               overwrite=overwrite)  # fmt: skip
    started = time.perf_counter()
    run_dir = Path(run_dir)
    is_first_process = int(os.environ.get("RANK", "0")) == 0
    if is_first_process:
        claim_run_dir(run_dir, resume=resume, overwrite=overwrite)
    device = resolve_device(cfg.train.device)
    dist_ctx = init_distributed(device)
    try:
        torch.set_num_threads(cfg.train.threads or max(1, (os.cpu_count() or 1) // dist_ctx.world_size))
        if dist_ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        data = prepare_data(cfg.data, seed=cfg.seed, tokenizer=pretrained_tokenizer_for(cfg))
        prep_seconds = time.perf_counter() - started
        if dist_ctx.is_main and not resume:
            write_run_metadata(run_dir, cfg, data)
        if data.issues:
            log.warning("%d row(s) skipped (data.on_error=skip); first: %s", len(data.issues), data.issues[0])

        task = Task(data.task, len(data.label_names), cfg.train.label_smoothing)
        torch.manual_seed(cfg.seed)
        model = model_for_data(cfg, data, task).to(device)
        attach_cached_features(cfg, model, data)
        train_prep = ImagePreprocessor(cfg.data, augment=True)
        eval_prep = ImagePreprocessor(cfg.data, augment=False)
        loader = BatchLoader(
            data.train, train_prep, batch_size=cfg.train.batch_size, shuffle=True, seed=cfg.seed,
            rank=dist_ctx.rank, world_size=dist_ctx.world_size, drop_last=True, group_by_image=cfg.train.group_by_image,
        )  # fmt: skip

        def loss_fn(m: torch.nn.Module, batch) -> torch.Tensor:
            if model.modality_dropout > 0:
                batch = add_missing_modality_rows(batch, model.modality_dropout)  # B → B + E rows
            return task.loss(m(batch), batch.label)

        def evaluate_fn(m: torch.nn.Module) -> dict[str, float]:
            metrics, _ = evaluate_split(
                m, data.val, task, eval_prep, batch_size=cfg.train.eval_batch_size, device=device
            )
            return metrics

        trainer = Trainer(
            model=model, train_loader=loader, loss_fn=loss_fn, evaluate_fn=evaluate_fn,
            monitor=task.primary_metric, cfg=cfg.train, run_dir=run_dir, device=device, dist_ctx=dist_ctx,
            callbacks=[MetricsLogger(run_dir, cfg.train.log_every), *(callbacks or [])],
        )  # fmt: skip
        if resume:
            trainer.resume()
        state = trainer.fit(stop_after_epochs=stop_after_epochs)
        finished = state.epoch >= cfg.train.epochs or state.stopped_early
        summary: dict[str, Any] = {
            "run_dir": str(run_dir),
            "complete": finished,
            "epochs": state.epoch,
            "best_epoch": state.best_epoch,
            "stopped_early": state.stopped_early,
            "parameters": count_parameters(model),
            "processes": dist_ctx.world_size,
            "data_seconds": round(prep_seconds, 2),
            "skipped_rows": len(data.issues),
            "first_skipped": [str(issue) for issue in data.issues[:5]],
        }
        if finished and dist_ctx.is_main:
            summary.update(finish_run(cfg, run_dir, data, task, model, state.history, device, dist_ctx))
            summary["total_seconds"] = round(time.perf_counter() - started, 2)
            (run_dir / "run.json").write_text(json.dumps(summary, indent=1))
        return summary
    finally:
        shutdown_distributed()


def finish_run(
    cfg: ExperimentConfig,
    run_dir: Path,
    data: PreparedData,
    task: Task,
    model: torch.nn.Module,
    history: list[dict[str, Any]],
    device: torch.device,
    dist_ctx: DistContext,
) -> dict[str, Any]:
    """Reload the best weights, score val and test, and write metrics, plots and report.md."""
    load_model_weights(model, run_dir / BEST_WEIGHTS)
    eval_prep = ImagePreprocessor(cfg.data, augment=False)
    plots_dir = run_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    plot_learning_curves(history, plots_dir / "learning_curves.png", task.primary_metric)
    plots = [("Learning curves", "plots/learning_curves.png")]
    metrics: dict[str, dict[str, float]] = {}
    for name, split in (("val", data.val), ("test", data.test)):
        if split is None or len(split) == 0:
            continue
        metrics[name], logits = evaluate_split(
            model, split, task, eval_prep, batch_size=cfg.train.eval_batch_size, device=device
        )
        if task.kind != "multilabel":
            matrix = confusion_matrix(task.predictions(logits), split.labels.long(), task.num_labels)
            png = f"plots/confusion_{name}.png"
            plot_confusion_matrix(matrix, data.label_names, run_dir / png, f"Confusion matrix ({name})")
            plots.append((f"Confusion matrix ({name})", png))
    (run_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=1))
    throughput = [r["train_samples_per_s"] for r in history]
    summary = {
        "dataset": cfg.data.name,
        "task": task.kind,
        "model": " + ".join(
            c.name for c in (cfg.model.image_encoder, cfg.model.text_encoder, cfg.model.fusion, cfg.model.head) if c
        ),
        "parameters": f"{count_parameters(model):,}",
        "train rows": len(data.train),
        "epochs trained": len(history),
        "training samples/s (mean)": f"{sum(throughput) / max(1, len(throughput)):.0f}",
        "processes": dist_ctx.world_size,
    }
    write_report(
        run_dir, title=f"vlfuse run: {run_dir.name}", summary=summary, metrics=metrics, history=history,
        issues=[str(i) for i in data.issues], plots=plots,
    )  # fmt: skip
    return {"metrics": metrics, "train_samples_per_s": summary["training samples/s (mean)"]}
