"""Training a video model: the classifier's training with clips for images — a per-frame tower and a temporal module
on the image side of the fusion — plus, on data whose questions have kinds (the built-in moving-shapes), accuracy
per kind and for order-dependent vs appearance questions, and frame strips of right and wrong test examples.

Run directory: what a classify run holds; test_metrics.json also holds "<split>_by_kind" entries, and plots/ holds
examples_right.png / examples_wrong.png.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch
from torch import nn

from vlfuse.classify.task import ClassifyTask, ShardedClassifyTask
from vlfuse.data.show import save_sample_grid
from vlfuse.data.splits import PreparedData, SplitData
from vlfuse.data.transforms import ImagePreprocessor, VideoPreprocessor
from vlfuse.features import cached_features
from vlfuse.train.runner import StageRecord
from vlfuse.types import EncoderOutput
from vlfuse.video.config import VideoConfig
from vlfuse.video.kinds import accuracy_by_kind
from vlfuse.video.run import build_video_classifier

log = logging.getLogger(__name__)
EXAMPLES = 6  # right and wrong test examples drawn as frame strips


def attach_cached_frame_features(cfg: VideoConfig, model: nn.Module, data: PreparedData) -> None:
    """With a frozen, cacheable frame tower and train.cache_features, give every split the cached features of each
    stored frame — tokens (M, F, N, D), pooled (M, F, D) — so no epoch runs the tower again (`vlfuse.features`: keyed
    by tower, preprocessing and pixels, computed once and kept on disk); the temporal module reads them."""
    encoder = getattr(model, "image_encoder", None)
    if not cfg.train.cache_features or encoder is None or not getattr(encoder, "frozen", False):
        return
    if cfg.data.augment.model_dump(exclude_defaults=True) or cfg.data.video.sampling == "random":
        log.info("augmentation and random frame sampling are off: the frozen frame tower reads cached features "
                 "(train.cache_features)")  # fmt: skip
    preprocess = ImagePreprocessor(cfg.data, augment=False)
    for split in (data.train, data.val, data.test):
        if split is None or split.images is None:
            continue
        m, f = split.images.shape[:2]
        frames = cached_features(encoder.frame_encoder, split.images.flatten(0, 1), preprocess)  # (M*F, N, D), …
        split.image_features = EncoderOutput(tokens=frames.tokens.unflatten(0, (m, f)),  # (M, F, N, D)
                                             pooled=frames.pooled.unflatten(0, (m, f)))  # (M, F, D)  # fmt: skip


class VideoTask(ClassifyTask):
    cfg: VideoConfig

    @classmethod
    def for_config(cls, cfg: VideoConfig) -> type[ClassifyTask]:
        return cls if cfg.data.shards is None else ShardedVideoTask

    def preprocessor(self, *, augment: bool) -> VideoPreprocessor:
        return VideoPreprocessor(self.cfg.data, augment=augment)

    def build_network(self) -> nn.Module:
        return build_video_classifier(self.cfg, self.data.tokenizer, self.objective.num_outputs)

    def build(self) -> nn.Module:
        model = self.build_network().to(self.ctx.device)
        attach_cached_frame_features(self.cfg, model, self.data)
        return model

    def scored_rows(self) -> dict[str, SplitData]:
        """The scored splits' rows (texts and labels; clips when held in memory), by split name."""
        return {"val": self.data.val, "test": self.data.test}

    def finish(self, model: nn.Module, records: list[StageRecord]) -> dict[str, Any]:
        result = super().finish(model, records)
        run_dir = self.ctx.run_dir
        metrics = json.loads((run_dir / "test_metrics.json").read_text())
        splits = self.scored_rows()
        for name, logits in self.final_logits.items():
            by_kind = accuracy_by_kind(self.cfg.data.name, splits[name], logits)
            if by_kind:
                metrics[f"{name}_by_kind"] = by_kind
        (run_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=1))
        result["metrics"] = metrics
        test = splits.get("test")
        if "test" in self.final_logits and self.objective.kind == "multiclass" and test.images is not None:
            self._draw_examples(test, self.final_logits["test"])
        return result

    def _draw_examples(self, split: SplitData, logits: torch.Tensor) -> None:
        """plots/examples_{right,wrong}.png: frame strips of test rows the model got right / wrong (evenly spread)."""
        predicted = logits.argmax(1)  # (N,)
        right = predicted == split.labels  # (N,)
        names = self.data.label_names
        lines = []
        for kind, rows in (("right", torch.nonzero(right).flatten()), ("wrong", torch.nonzero(~right).flatten())):
            if len(rows) == 0:
                lines.append(f"- no {kind} test examples")
                continue
            picked = rows[torch.linspace(0, len(rows) - 1, min(EXAMPLES, len(rows))).round().long()].tolist()
            notes = [f"model: {names[int(predicted[r])]}" for r in picked]
            save_sample_grid(split, names, self.ctx.run_dir / "plots" / f"examples_{kind}.png", rows=picked,
                             notes=notes)  # fmt: skip
            lines.append(f"![{kind} test examples](plots/examples_{kind}.png)")
        report = self.ctx.run_dir / "report.md"
        report.write_text(report.read_text() + "\n## Test examples (frame strips)\n\n" + "\n\n".join(lines) + "\n")


class ShardedVideoTask(ShardedClassifyTask, VideoTask):
    """The video task streaming packed clips (`data.shards`, from `vlfuse data pack moving-shapes` or a video table):
    the streamed classifier's data path with the video task's model, frame choice and per-kind scores. Frame strips
    of right and wrong examples need the clips in memory and are not drawn."""

    def scored_rows(self) -> dict[str, SplitData]:
        return self.scored
