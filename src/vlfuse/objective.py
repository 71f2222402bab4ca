"""Objective = how logits become a loss, probabilities and metrics, for each kind of label."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Objective:
    """One of multiclass (K logits, cross-entropy), binary (1 logit, BCE) or multilabel (K logits, BCE)."""

    kind: str
    num_labels: int  # number of label names (2 for binary)
    label_smoothing: float = 0.0

    @property
    def num_outputs(self) -> int:
        return 1 if self.kind == "binary" else self.num_labels

    @property
    def primary_metric(self) -> str:
        return "f1_micro" if self.kind == "multilabel" else "accuracy"

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        if self.kind == "multiclass":
            return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        if self.kind == "binary":
            return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
        return F.binary_cross_entropy_with_logits(logits, labels.float())

    def probabilities(self, logits: Tensor) -> Tensor:
        """(B, K) → (B, num_labels): softmax, [1-p, p] for binary, independent sigmoids for multilabel."""
        if self.kind == "multiclass":
            return logits.softmax(-1)
        if self.kind == "binary":
            p = logits[:, 0].sigmoid()  # (B,)
            return torch.stack([1 - p, p], dim=1)  # (B, 2)
        return logits.sigmoid()

    def predictions(self, logits: Tensor) -> Tensor:
        """Class ids (B,) for multiclass/binary; multi-hot (B, K) for multilabel."""
        if self.kind == "multilabel":
            return (logits > 0).float()
        if self.kind == "binary":
            return (logits[:, 0] > 0).long()
        return logits.argmax(-1)

    def metrics(self, logits: Tensor, labels: Tensor) -> dict[str, float]:
        """Metrics over a whole split (logits (N, K), labels as stored in SplitData)."""
        loss = float(self.loss(logits, labels))
        pred = self.predictions(logits)
        if self.kind == "multilabel":
            tp = float((pred * labels).sum())
            fp = float((pred * (1 - labels)).sum())
            fn = float(((1 - pred) * labels).sum())
            f1 = 2 * tp / max(2 * tp + fp + fn, 1e-9)
            exact = float((pred == labels).all(1).float().mean())
            return {"loss": loss, "f1_micro": f1, "subset_accuracy": exact}
        target = labels.long()
        out = {"loss": loss, "accuracy": float((pred == target).float().mean())}
        if self.kind == "multiclass":
            cm = confusion_matrix(pred, target, self.num_labels)
            recall = cm.diag() / cm.sum(1).clamp(min=1)  # (K,)
            out["balanced_accuracy"] = float(recall[cm.sum(1) > 0].mean())
        return out


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(K, K) counts, rows = true class, columns = predicted class."""
    flat = target.long() * num_classes + pred.long()  # (N,)
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)
