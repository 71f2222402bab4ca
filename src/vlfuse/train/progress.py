"""A rich progress bar for the console, showing epoch, loss and training samples/s."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vlfuse.train.trainer import Callback, Trainer


class ProgressBar(Callback):
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.task_id = None
        self.samples = 0
        self.started = 0.0
        self.loss = float("nan")

    def _new_epoch(self, trainer: Trainer) -> None:
        description = f"epoch {trainer.state.epoch + 1}/{trainer.cfg.epochs}"
        self.task_id = self.progress.add_task(description, total=len(trainer.train_loader), rate="", loss="")

    def on_train_start(self, trainer: Trainer) -> None:
        if not trainer.dist.is_main:
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[loss]}"), TimeElapsedColumn(),
            console=self.console, transient=False,
        )  # fmt: skip
        if trainer.state.epoch >= trainer.cfg.epochs or trainer.state.stopped_early:
            how = "stopped early" if trainer.state.stopped_early else "trained"
            self.console.print(f"all {trainer.state.epoch} epoch(s) of this stage were already {how}; nothing left "
                               "to train")  # fmt: skip
            self.progress = None
            return
        self.progress.start()
        self.samples, self.started = 0, time.perf_counter()

    def on_step_end(self, trainer: Trainer, loss: float, batch_size: int) -> None:
        if self.progress is None:
            return
        if self.task_id is None:
            self._new_epoch(trainer)
        self.samples += batch_size
        self.loss = loss if self.loss != self.loss else 0.9 * self.loss + 0.1 * loss
        rate = self.samples / max(1e-9, time.perf_counter() - self.started)
        self.progress.update(self.task_id, advance=1, rate=f"{rate:,.0f} samples/s", loss=f"loss {self.loss:.4f}")

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self.progress is None:
            return
        metric = record.get(f"val_{trainer.monitor}")
        self.progress.console.print(
            f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}  "
            f"val loss {record.get('val_loss', float('nan')):.4f}  val {trainer.monitor} {metric:.4f}  "
            f"{record['train_samples_per_s']:,.0f} samples/s"
        )
        self.task_id = None  # the next epoch's bar appears with its first step
        self.samples, self.started = 0, time.perf_counter()

    def on_train_end(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
