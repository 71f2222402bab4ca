"""Training a bridge (`task: bridge`): stages in order (LLaVA-style), typically caption alignment (the projector
learns to put "a red circle" into the LM's words), then question answering with caption rows mixed in.

Visual tokens come from the frozen image encoder through the on-disk feature cache, so no epoch recomputes them.
Run directory (beside what the runner writes, stages/<i>-<objective>/ among it): bridge.safetensors (projector +
adapters only), metrics.json, report.md, plots/samples.png.
"""

from __future__ import annotations

import time
from typing import Any

from torch import nn

from vlfuse.bridge.config import STAGE_OBJECTIVES, BridgeConfig
from vlfuse.bridge.data import BridgeLoader, BridgeSplit, load_bridge_split
from vlfuse.bridge.evaluate import evaluate_stage, split_features, write_test_results
from vlfuse.bridge.run import WEIGHTS, build_bridge
from vlfuse.errors import ConfigError
from vlfuse.train.checkpoint import save_model_weights
from vlfuse.train.runner import Stage, StageRecord, TrainingTask


def check_stage_objectives(cfg: BridgeConfig, split: BridgeSplit) -> None:
    """A stage on rows the data does not have (questions of a caption-only set) is a config error."""
    for i, stage in enumerate(cfg.stages):
        for objective in STAGE_OBJECTIVES[stage.objective]:
            if len(split.rows(objective)) == 0:
                raise ConfigError(f"stages.{i}.objective={stage.objective}: {split.name} has no {objective} rows")


class BridgeTask(TrainingTask):
    """Single-process (the LM is shared, not replicated)."""

    cfg: BridgeConfig

    def prepare(self) -> None:
        cfg = self.cfg
        self.started = time.perf_counter()
        full = load_bridge_split(cfg.data, "train", cfg.caption_prompt, n_templates=cfg.caption_templates)
        check_stage_objectives(cfg, full)
        self.train, self.val = full.split_by_image(cfg.eval.val_fraction, cfg.seed)

    def build(self) -> nn.Module:
        self.model, self.encoder = build_bridge(self.cfg, self.ctx.device)
        return self.model

    def stages(self, model: nn.Module) -> list[Stage]:
        cfg, train, val = self.cfg, self.train, self.val
        feature_start = time.perf_counter()
        train_visual, val_visual = split_features(self.encoder, train, cfg), split_features(self.encoder, val, cfg)
        self.feature_seconds = time.perf_counter() - feature_start
        stages = []
        for index, stage in enumerate(cfg.stages):
            loader = BridgeLoader(train.rows(stage.objective), train_visual, model, batch_size=stage.train.batch_size,
                                  rows_per_epoch=stage.rows_per_epoch, seed=cfg.seed + index)  # fmt: skip
            val_rows = {objective: val.rows(objective).select(range(min(cfg.eval.val_rows, len(val.rows(objective)))))
                        for objective in STAGE_OBJECTIVES[stage.objective]}  # fmt: skip

            def evaluate(m: nn.Module, rows=val_rows) -> dict[str, float]:
                return evaluate_stage(m, cfg, val, val_visual, rows)

            stages.append(Stage(stage.objective, stage.train, loader, lambda m, b: m.loss(b), evaluate, "accuracy"))
        return stages

    def finish(self, model: nn.Module, records: list[StageRecord]) -> dict[str, Any]:
        """Save the trained parts, score the test split, write metrics.json and the report."""
        run_dir = self.ctx.run_dir
        save_model_weights(model, run_dir / WEIGHTS, {"format": "vlfuse-bridge"})
        summary = {
            "train_seconds": round(time.perf_counter() - self.started, 1),
            "feature_seconds": round(self.feature_seconds, 1),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "weights_bytes": (run_dir / WEIGHTS).stat().st_size,
            "stages": [{"objective": r.name, "epochs": r.epochs, "best_val_accuracy": r.best_metric,
                        "seconds": r.seconds} for r in records],  # fmt: skip
            "test": {},
        }
        summary = write_test_results(run_dir, self.cfg, model, self.encoder, summary)
        return {"metrics": {"test": summary["test"]}, "train_seconds": summary["train_seconds"]}
