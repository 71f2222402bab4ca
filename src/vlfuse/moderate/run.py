"""A finished moderation run: calibrated per-label probabilities and policy decisions for image + text items.

Needs nothing but the run directory (a classify run's files plus moderation.json); never imports the training code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlfuse.classify.run import ClassifyRun
from vlfuse.errors import CheckpointError
from vlfuse.moderate.calibration import Calibrator
from vlfuse.moderate.config import ModerateConfig
from vlfuse.moderate.policy import band_of, label_decisions, most_severe

MODERATION_FILE = "moderation.json"
DRIVER_RATIO = 0.5  # a modality "drives" a score when removing it moves the score ≥ 2× more than removing the other


def score_labels(objective: str, label_names: list[str]) -> list[str]:
    """The labels that get a score: every label (multilabel), the positive one (binary: label_names[1])."""
    return list(label_names) if objective == "multilabel" else [label_names[1]]


@dataclass
class LabelVerdict:
    probability: float  # calibrated
    decision: str  # allow | review | block
    driver: str | None = None  # image | text | both; None when not asked or the model cannot do without one


@dataclass
class Verdict:
    decision: str
    labels: dict[str, LabelVerdict] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "labels": {k: v.__dict__ for k, v in self.labels.items()},
                "reasons": [k for k, v in self.labels.items() if v.decision != "allow"]}  # fmt: skip


class ModerateRun(ClassifyRun):
    task = "moderate"

    @classmethod
    def load(cls, path: str | Path, cfg: ModerateConfig, *, device: str = "cpu") -> ModerateRun:
        run = super().load(path, cfg, device=device)
        file = Path(path) / MODERATION_FILE
        try:
            run.moderation = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{file}: cannot read the run's calibration and thresholds ({err})") from None
        run.calibrator = Calibrator.from_dict(run.moderation["calibration"])
        run.scores = run.moderation["score_labels"]
        run.rules = run.moderation["rules"]
        return run

    @property
    def can_attribute(self) -> bool:
        """Whether the model scores an item with one modality missing (learned placeholders), which the driver
        attribution needs."""
        placeholders = getattr(self.model, "placeholders", None)
        return placeholders is not None and placeholders.learned

    @torch.inference_mode()
    def calibrated(self, images=None, texts=None) -> np.ndarray:
        """(B, K) calibrated probabilities of the score labels for parallel lists of images and texts."""
        batch = self.make_batch(images, texts).to(next(self.model.parameters()).device)
        logits = self.model(batch).float().cpu().numpy()  # (B, K)
        return self.calibrator(logits)

    def predict_proba(self, images=None, texts=None) -> torch.Tensor:
        """(B, num_labels) *calibrated* probabilities, so `predict`, `vlfuse predict` and /v1/predict of a moderate run
        report what its decisions use (binary: [1 - p, p])."""
        p = torch.from_numpy(self.calibrated(images, texts)).float()  # (B, K)
        return torch.cat([1 - p, p], dim=1) if self.objective.kind == "binary" else p

    def decide(self, probs: np.ndarray) -> list[Verdict]:
        """Policy decisions for calibrated probabilities (B, K)."""
        columns = [
            label_decisions(probs[:, k], self.rules[name]["action"], *band_of(self.rules[name]))
            if name in self.rules else np.full(len(probs), "allow", dtype=object)
            for k, name in enumerate(self.scores)
        ]  # K arrays (B,)
        verdicts = []
        for b, row in enumerate(probs.tolist()):
            labels = {name: LabelVerdict(row[k], str(columns[k][b])) for k, name in enumerate(self.scores)}
            verdicts.append(Verdict(most_severe([v.decision for v in labels.values()]), labels))
        return verdicts

    def moderate(self, images=None, texts=None, *, attribute: bool = False) -> list[Verdict]:
        """Verdicts for parallel lists of images and texts (either may be missing, or hold None entries, when the
        model learned placeholders). With `attribute`, each label names the modality that drove its score: the
        one whose removal moves the probability most (leave one modality out; both when neither dominates)."""
        probs = self.calibrated(images, texts)
        verdicts = self.decide(probs)
        if attribute and self.can_attribute and images is not None and texts is not None:
            both = [b for b, (i, t) in enumerate(zip(images, texts, strict=True)) if i is not None and t is not None]
            if both:
                no_image = self.calibrated([None] * len(both), [texts[b] for b in both])  # (E, K) from the text alone
                no_text = self.calibrated([images[b] for b in both], [None] * len(both))  # (E, K) from the image alone
                for row, b in enumerate(both):
                    for k, name in enumerate(self.scores):
                        image_delta = abs(probs[b, k] - no_image[row, k])  # what the image adds
                        text_delta = abs(probs[b, k] - no_text[row, k])  # what the text adds
                        small, large = sorted((image_delta, text_delta))
                        driver = "both" if small >= DRIVER_RATIO * large else (
                            "image" if image_delta > text_delta else "text")  # fmt: skip
                        verdicts[b].labels[name].driver = driver
        return verdicts
