"""Look at prepared data: counts and label balance per split, and a PNG grid of samples."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from vlfuse.data.splits import PreparedData, SplitData


def row_label_names(labels: Tensor, label_names: list[str]) -> list[str]:
    """The display name of each row's label (multilabel rows join their names with '|')."""
    if labels.ndim == 2:  # (N, K) multi-hot
        return ["|".join(label_names[k] for k in np.flatnonzero(row)) or "(none)" for row in labels.numpy()]
    return [label_names[int(v)] for v in labels.tolist()]


def label_counts(split: SplitData, label_names: list[str]) -> dict[str, int]:
    """Rows per label (per name for multilabel, counting each row once per label it holds)."""
    if split.labels is None:
        return {}
    if split.labels.ndim == 2:
        counts = split.labels.sum(0).long().tolist()  # (K,)
    else:
        counts = np.bincount(split.labels.long().numpy(), minlength=len(label_names)).tolist()
    return dict(zip(label_names, (int(c) for c in counts), strict=True))


def summarize(prepared: PreparedData) -> dict[str, Any]:
    """Row / image counts and label balance per split, the tokenizer size and the skipped-row count."""
    splits: dict[str, Any] = {}
    for name in ("train", "val", "test"):
        split = getattr(prepared, name)
        if split is None:
            continue
        splits[name] = {
            "rows": len(split),
            "images": 0 if split.images is None else int(split.images.shape[0]),
            "image_shape": None if split.images is None else list(split.images.shape[1:]),
            "labels": label_counts(split, prepared.label_names),
        }
    tok = prepared.tokenizer
    return {
        "objective": prepared.objective,
        "num_labels": len(prepared.label_names),
        "label_names": list(prepared.label_names),
        "splits": splits,
        "tokenizer": None
        if tok is None
        else {"kind": tok.kind, "vocab_size": tok.vocab_size, "max_length": tok.max_length},
        "skipped_rows": len({(i.file, i.row) for i in prepared.issues}),
        "issues": [str(i) for i in prepared.issues[:20]],
    }


def frame_strip(clip: Tensor) -> np.ndarray:
    """A clip's frames side by side, one-pixel white gaps between them: (T, C, H, W) → (H, T·(W+1)−1, C) uint8; an
    image (C, H, W) → (H, W, C)."""
    if clip.ndim == 3:
        return clip.permute(1, 2, 0).numpy()  # (H, W, C)
    t, c, h, w = clip.shape
    strip = np.full((h, t * (w + 1) - 1, c), 255, dtype=np.uint8)  # (H, T·(W+1)−1, C)
    for k, frame in enumerate(clip.numpy()):
        strip[:, k * (w + 1) : k * (w + 1) + w] = frame.transpose(1, 2, 0)  # (H, W, C)
    return strip


def save_sample_grid(
    split: SplitData, label_names: list[str], path: str | Path, n: int = 16, *, rows: list[int] | None = None,
    notes: list[str] | None = None,
) -> Path:  # fmt: skip
    """Save a PNG grid of samples — `rows`, or `n` rows spread evenly over the split: image (a clip: its frame
    strip), wrapped text, label and an optional note per row (e.g. the prediction)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    total = len(split)
    if rows is None:
        rows = np.unique(np.linspace(0, total - 1, num=min(n, total)).round().astype(int)) if total else []
    rows = np.asarray(rows, dtype=int)
    clips = split.images is not None and split.images.ndim == 5
    cols = max(1, min(2 if clips else 4, len(rows)))
    grid_rows = max(1, -(-len(rows) // cols))
    fig = Figure(figsize=(7.0 * cols, 1.6 * grid_rows) if clips else (3.0 * cols, 3.4 * grid_rows))
    FigureCanvasAgg(fig)
    names = row_label_names(split.labels[rows], label_names) if split.labels is not None and len(rows) else []
    for k, r in enumerate(rows):
        ax = fig.add_subplot(grid_rows, cols, k + 1)
        ax.set_axis_off()
        if split.images is not None and split.image_index is not None:
            image = frame_strip(split.images[split.image_index[r]])  # (H, W', C)
            if image.shape[2] == 1:
                ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=255)
            else:
                ax.imshow(image)
        caption = textwrap.fill(split.texts[r], 64 if clips else 32) if split.texts and split.texts[r] else ""
        label = f"→ {names[k]}" if names else ""
        note = notes[k] if notes else ""
        ax.set_title("\n".join(p for p in (caption, label, note) if p), fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
