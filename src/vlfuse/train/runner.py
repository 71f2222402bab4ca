"""The one run skeleton every task trains through, and the `TrainingTask` interface a task implements.

    claim the run directory → device, processes, threads → task.prepare() → config.yaml + task.save_metadata()
    → seed → task.build() → for each of task.stages(model): Trainer (checkpoints, exact resume) → task.finish()

A task with one stage trains in the run directory itself (model.safetensors, checkpoints/, metrics.jsonl); a task
with several trains stage i in `stages/<i>-<name>/` and marks it done with `done.json`, so a resumed run skips the
finished stages, reloads their best weights and continues the interrupted one from its last checkpoint. Stage i ≥ 1
starts from the seed `cfg.seed + i`, so where a run was interrupted does not change its result.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from vlfuse.config import TrainConfig, save_config
from vlfuse.errors import ConfigError
from vlfuse.task import get_task
from vlfuse.threads import configure_threads
from vlfuse.train.checkpoint import claim_run_dir, load_model_weights, recover_interrupted_writes
from vlfuse.train.distributed import DistContext, init_distributed, shutdown_distributed
from vlfuse.train.precision import resolve_precision
from vlfuse.train.trainer import BEST_WEIGHTS, LAST_CHECKPOINT, Callback, MetricsLogger, Trainer, TrainerState
from vlfuse.types import Batch

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """`train.device`: auto (CUDA when available, else CPU), cpu, cuda or cuda:N."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but CUDA is not available on this machine")
    return torch.device(name)


@dataclass
class RunContext:
    """What the runner gives a task: where the run lives and what it runs on."""

    run_dir: Path
    device: torch.device
    dist: DistContext
    resume: bool


@dataclass
class Stage:
    """One training stage: the Trainer's inputs. `loader` has `set_epoch(epoch)` and `len()`."""

    name: str
    train: TrainConfig
    loader: Iterable[Batch]
    loss: Callable[[nn.Module, Any], torch.Tensor]
    evaluate: Callable[[nn.Module], dict[str, float]]
    monitor: str


@dataclass
class StageRecord:
    """A finished stage: what `TrainingTask.finish` receives (and done.json holds)."""

    name: str
    epochs: int
    best_epoch: int
    best_metric: float
    stopped_early: bool
    seconds: float
    history: list[dict[str, Any]]


class TrainingTask:
    """A task's training side. The runner calls, in order: `prepare`, `save_metadata` (first start only, on the
    main process), `build`, `stages`, and — once every stage is done, on the main process — `finish`.

    Attributes:
        distributed: whether the task trains under torchrun with several processes (DDP).
        trains: False for a task whose `stages` are empty (its run is built and scored, nothing is learned).
    """

    distributed: ClassVar[bool] = False
    trains: ClassVar[bool] = True

    def __init__(self, cfg: BaseModel, ctx: RunContext) -> None:
        self.cfg = cfg
        self.ctx = ctx

    @classmethod
    def for_config(cls, cfg: BaseModel) -> type[TrainingTask]:
        """The class that trains `cfg`: this one, or a variant (classification streaming packed shards)."""
        if getattr(getattr(cfg, "data", None), "shards", None) is not None:
            raise ConfigError(f"data.shards: task '{getattr(cfg, 'task', '?')}' reads its data into memory; streaming "
                              "packed shards is supported by tasks 'classify' and 'video'")  # fmt: skip
        return cls

    def prepare(self) -> None:
        """Load and split the data (on resume, with the tokenizer the run saved)."""
        raise NotImplementedError

    def save_metadata(self) -> None:
        """Files besides config.yaml that loading the run needs (labels.json, tokenizer.json, data_issues.json)."""

    def build(self) -> nn.Module:
        """The model, on `ctx.device`, sizes derived from the prepared data."""
        raise NotImplementedError

    def stages(self, model: nn.Module) -> list[Stage]:
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        """Task-specific fields of the run summary (rows used, rows skipped, …)."""
        return {}

    def finish(self, model: nn.Module, records: list[StageRecord]) -> dict[str, Any]:
        """Score the finished model (best weights loaded), write metrics and report; return {"metrics": …, …}."""
        raise NotImplementedError


def has_trained(run_dir: Path) -> bool:
    """Whether `run_dir` holds a checkpoint or a finished stage to continue from."""
    return (run_dir / LAST_CHECKPOINT).is_file() or any(run_dir.glob(f"stages/*/{LAST_CHECKPOINT}")) or any(
        run_dir.glob("stages/*/done.json")
    )


def _stage_dir(run_dir: Path, index: int, stage: Stage, count: int) -> Path:
    return run_dir if count == 1 else run_dir / "stages" / f"{index}-{stage.name}"


def _record(stage: Stage, state: TrainerState, seconds: float) -> StageRecord:
    return StageRecord(stage.name, state.epoch, state.best_epoch, state.best_metric, state.stopped_early,
                       round(seconds, 1), state.history)  # fmt: skip


def run_training(
    cfg: BaseModel,
    run_dir: str | Path,
    *,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    callbacks: list[Callback] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train `cfg` (any task) into `run_dir`, or continue it (`resume`); return the run summary.

    `stop_after_epochs` ends this call after that many epochs (over all stages), as an interruption would, leaving a
    resumable run; the summary then says `complete: False`.

    Raises:
        ConfigError: several processes for a task that trains in one, or an unusable device.
        CheckpointError: `run_dir` already holds a run and neither resume nor overwrite was asked for.

    A resumed run first settles what an interruption left (`recover_interrupted_writes`); one that holds no
    checkpoint yet starts from the beginning, config.yaml and metadata rewritten.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    info = get_task(cfg.task)
    task_class = info.training_class.for_config(cfg)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not task_class.distributed:
        raise ConfigError(f"task '{info.name}' trains in one process; run it without --nproc")
    if int(os.environ.get("RANK", "0")) == 0:
        claim_run_dir(run_dir, resume=resume, overwrite=overwrite)
        if run_dir.is_dir():  # a resumed run, or a start again after a kill before config.yaml was written
            recover_interrupted_writes(run_dir)
    device = resolve_device(cfg.train.device)
    precision, precision_reason = resolve_precision(cfg.train.precision, device)
    log.info("precision: %s (%s)", precision, precision_reason)
    dist_ctx = init_distributed(device)
    try:
        if resume and not dist_ctx.broadcast_flag(has_trained(run_dir)):  # rank 0 decides, after its recovery
            if dist_ctx.is_main:
                log.warning("%s holds no checkpoint yet (it was interrupted before its first epoch ended): "
                            "training it from the beginning", run_dir)  # fmt: skip
            resume = False
        threads, threads_reason = configure_threads(cfg.train.threads, share=dist_ctx.world_size)
        if dist_ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        task = task_class(cfg, RunContext(run_dir, device, dist_ctx, resume))
        task.prepare()
        prep_seconds = time.perf_counter() - started
        if dist_ctx.is_main and not resume:
            save_config(cfg, run_dir / "config.yaml")
            task.save_metadata()
        torch.manual_seed(cfg.seed)
        model = task.build()
        records, complete = _train_stages(task, model, run_dir, cfg.seed, dist_ctx, resume, stop_after_epochs,
                                          callbacks)  # fmt: skip
        last = records[-1] if records else None
        summary: dict[str, Any] = {
            "run_dir": str(run_dir), "task": info.name, "complete": complete,
            "epochs": sum(r.epochs for r in records), "best_epoch": last.best_epoch if last else -1,
            "stopped_early": bool(last and last.stopped_early),
            "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "processes": dist_ctx.world_size, "data_seconds": round(prep_seconds, 2),
            "precision": {"requested": cfg.train.precision, "used": precision, "why": precision_reason},
            "threads": {"start": threads, "why": threads_reason},
            **task.summary(),
        }  # fmt: skip
        if complete and dist_ctx.is_main:
            summary.update(task.finish(model, records))
            summary["total_seconds"] = round(time.perf_counter() - started, 2)
            (run_dir / "run.json").write_text(json.dumps(summary, indent=1, default=str))
        return summary
    finally:
        shutdown_distributed()


def _train_stages(
    task: TrainingTask, model: nn.Module, run_dir: Path, seed: int, dist_ctx: DistContext, resume: bool,
    stop_after_epochs: int | None, callbacks: list[Callback] | None,
) -> tuple[list[StageRecord], bool]:  # fmt: skip
    """Train the stages in order; returns the records of the stages trained so far and whether all are done."""
    stages = task.stages(model)
    records: list[StageRecord] = []
    budget = stop_after_epochs
    for index, stage in enumerate(stages):
        stage_dir = _stage_dir(run_dir, index, stage, len(stages))
        done = stage_dir / "done.json"
        if len(stages) > 1 and done.is_file():  # finished before an interruption: reuse its best weights
            load_model_weights(model, stage_dir / BEST_WEIGHTS)
            records.append(StageRecord(**json.loads(done.read_text())))
            continue
        if budget is not None and budget <= 0:
            return records, False
        if index > 0:
            torch.manual_seed(seed + index)
        if dist_ctx.is_main:
            stage_dir.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(
            model=model, train_loader=stage.loader, loss_fn=stage.loss, evaluate_fn=stage.evaluate,
            monitor=stage.monitor, cfg=stage.train, run_dir=stage_dir, device=task.ctx.device, dist_ctx=dist_ctx,
            callbacks=[MetricsLogger(stage_dir, stage.train.log_every), *(callbacks or [])],
        )  # fmt: skip
        if resume and (stage_dir / LAST_CHECKPOINT).is_file():
            trainer.resume()
        epochs_before, stage_start = trainer.state.epoch, time.perf_counter()
        state = trainer.fit(stop_after_epochs=budget)
        if budget is not None:
            budget -= state.epoch - epochs_before
        finished = state.epoch >= stage.train.epochs or state.stopped_early
        record = _record(stage, state, time.perf_counter() - stage_start)
        records.append(record)
        if not finished:
            return records, False
        load_model_weights(model, stage_dir / BEST_WEIGHTS)
        if len(stages) > 1 and dist_ctx.is_main:
            done.write_text(json.dumps(record.__dict__, indent=1))
    return records, True
