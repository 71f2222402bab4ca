"""Accuracy per question kind, for data whose questions have kinds (the built-in moving-shapes: order-dependent vs
appearance questions). Light: used by the training task, `vlfuse evaluate` and the benchmarks."""

from __future__ import annotations

import torch

from vlfuse.data.splits import SplitData


def accuracy_by_kind(dataset: str, split: SplitData, logits: torch.Tensor) -> dict[str, float]:
    """{kind: accuracy, …, "order": …, "appearance": …} over the split's rows; {} for data without question kinds.

    Args:
        dataset: data.name of the run.
        split: the scored split (its texts and labels).
        logits: (N, K) the model's logits for its rows.
    """
    if dataset != "moving-shapes" or split.labels is None or logits.ndim != 2 or len(split) == 0:
        return {}
    from vlfuse.data.builtin.moving_shapes import ORDER_KINDS, question_kind

    right = (logits.argmax(1) == split.labels).tolist()  # (N,)
    kinds = [question_kind(text) for text in split.texts]
    groups: dict[str, list[bool]] = {}
    for kind, ok in zip(kinds, right, strict=True):
        groups.setdefault(kind, []).append(ok)
        groups.setdefault("order" if kind in ORDER_KINDS else "appearance", []).append(ok)
    return {kind: sum(oks) / len(oks) for kind, oks in sorted(groups.items())}
