"""Label vocabularies and label encoding for the three objectives (multiclass, binary, multilabel)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from vlfuse.errors import DataError

OBJECTIVES = ("multiclass", "binary", "multilabel")


def _natural_key(values: list[str]) -> list[str]:
    """Sort labels numerically when all of them are numbers ("2" before "10"), else as strings."""
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def _row_labels(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def format_names(names: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def label_vocabulary(
    labels: Sequence[str] | Sequence[Sequence[str]],
    objective: str,
    *,
    known_order: list[str] | None = None,
    source: str = "data",
    column: str = "label",
) -> list[str]:
    """The label names in id order: `known_order` (a built-in's own order) or the sorted distinct labels.

    Raises:
        DataError: fewer than two classes (multiclass), not exactly two values (binary), or no labels at all.
    """
    if objective not in OBJECTIVES:
        raise DataError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    if known_order is not None:
        names = list(known_order)
    elif objective == "multilabel":
        names = _natural_key(list({name for row in labels for name in _row_labels(row)}))
    else:
        names = _natural_key(list(set(labels)))  # type: ignore[arg-type]
    where = f"{source}, column '{column}'"
    if objective == "binary" and len(names) != 2:
        raise DataError(
            f"{where}: objective 'binary' needs exactly two distinct labels, found {len(names)}: "
            f"{format_names(names)}; use objective 'multiclass' for more classes"
        )
    if objective == "multiclass" and len(names) < 2:
        raise DataError(
            f"{where}: objective 'multiclass' needs at least two distinct labels, found {format_names(names)}"
        )
    if objective == "multilabel" and not names:
        raise DataError(f"{where}: no labels found")
    return names


def unknown_labels(
    labels: Sequence[str] | Sequence[Sequence[str]], label_names: Sequence[str], objective: str
) -> list[tuple[int, str]]:
    """(position, label) for every row holding a label outside `label_names` (first such label per row)."""
    known = set(label_names)
    out = []
    for i, value in enumerate(labels):
        for name in _row_labels(value) if objective == "multilabel" else [value]:
            if name not in known:
                out.append((i, name))
                break
    return out


def encode_labels(
    labels: Sequence[str] | Sequence[Sequence[str]],
    label_names: Sequence[str],
    objective: str,
    *,
    source: str = "labels",
) -> Tensor:
    """Label strings → tensor: (N,) long class ids (multiclass), (N,) float 0/1 (binary, 1 = label_names[1])
    or (N, K) float multi-hot (multilabel, one list of names per row).

    Raises:
        DataError: a label is not in `label_names` (names the row position and the known labels).
    """
    bad = unknown_labels(labels, label_names, objective)
    if bad:
        pos, name = bad[0]
        known = format_names(label_names)
        raise DataError(f"{source}: label {name!r} at position {pos} is not a known label; known labels: {known}")
    lookup = {name: i for i, name in enumerate(label_names)}
    if objective == "multilabel":
        out = torch.zeros((len(labels), len(label_names)), dtype=torch.float32)  # (N, K)
        for i, value in enumerate(labels):
            out[i, [lookup[n] for n in _row_labels(value)]] = 1.0
        return out
    if objective not in OBJECTIVES:
        raise DataError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    ids = torch.tensor([lookup[v] for v in labels], dtype=torch.long)  # (N,)
    return ids.float() if objective == "binary" else ids
