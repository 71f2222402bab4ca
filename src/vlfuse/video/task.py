"""Training a video model: the classifier's training with clips for images — a per-frame tower and a temporal module
on the image side of the fusion — plus, on data whose questions have kinds (the built-in moving-shapes), accuracy
per kind and for order-dependent vs appearance questions, and frame strips of right and wrong test examples.

Run directory: what a classify run holds; test_metrics.json also holds "<split>_by_kind" entries, and plots/ holds
examples_right.png / examples_wrong.png.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from vlfuse.classify.task import ClassifyTask
from vlfuse.data.show import save_sample_grid
from vlfuse.data.splits import SplitData
from vlfuse.data.transforms import VideoPreprocessor
from vlfuse.train.runner import StageRecord
from vlfuse.video.config import VideoConfig
from vlfuse.video.kinds import accuracy_by_kind
from vlfuse.video.run import build_video_classifier

EXAMPLES = 6  # right and wrong test examples drawn as frame strips


class VideoTask(ClassifyTask):
    cfg: VideoConfig

    def preprocessor(self, *, augment: bool) -> VideoPreprocessor:
        return VideoPreprocessor(self.cfg.data, augment=augment)

    def build(self) -> nn.Module:
        return build_video_classifier(self.cfg, self.data.tokenizer, self.objective.num_outputs).to(self.ctx.device)

    def finish(self, model: nn.Module, records: list[StageRecord]) -> dict[str, Any]:
        result = super().finish(model, records)
        run_dir = self.ctx.run_dir
        metrics = json.loads((run_dir / "test_metrics.json").read_text())
        splits = {"val": self.data.val, "test": self.data.test}
        for name, logits in self.final_logits.items():
            by_kind = accuracy_by_kind(self.cfg.data.name, splits[name], logits)
            if by_kind:
                metrics[f"{name}_by_kind"] = by_kind
        (run_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=1))
        result["metrics"] = metrics
        if "test" in self.final_logits and self.objective.kind == "multiclass":
            self._draw_examples(self.data.test, self.final_logits["test"])
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
