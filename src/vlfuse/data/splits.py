"""In-memory dataset types: a loaded source (`RawSplit`), encoded splits (`SplitData`, `PreparedData`), skipped rows
(`DataIssue`), and the seeded row choices every task shares (row limits, the validation split by image)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from vlfuse.data.text import TextTokenizer
from vlfuse.errors import DataError
from vlfuse.types import EncoderOutput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataIssue:
    """One row skipped under `data.on_error: skip`. `row` is the number shown to users (see RawSplit)."""

    file: str
    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}, row {self.row}, column '{self.column}': {self.message}"


def _as_index(rows: Tensor | Sequence[int] | np.ndarray) -> Tensor:
    return torch.as_tensor(np.asarray(rows, dtype=np.int64)) if not isinstance(rows, Tensor) else rows.long()


def _take_images(
    images: Tensor | None, image_index: Tensor | None, sources: list[str], rows: Tensor
) -> tuple[Tensor | None, Tensor | None, list[str]]:
    """Keep only the images referenced by `rows` and renumber the row → image index accordingly."""
    if images is None or image_index is None:
        return None, None, []
    used, new_index = torch.unique(image_index[rows], sorted=True, return_inverse=True)  # (M',), (N',)
    return images[used], new_index, [sources[i] for i in used.tolist()]  # (M', C, H, W)


@dataclass
class RawSplit:
    """A loaded source before tokenizing / label encoding: decoded images and raw strings.

    Attributes:
        file: where the rows came from, for messages (table path or e.g. "easy-vqa:train").
        images: (M, C, H, W) uint8 unique images — or clips (M, F, C, H, W) for video data — or None for data
            without images.
        image_index: (N,) long, row → index into `images`.
        texts: per row, one string per text column; None for data without text.
        labels: per row, the label string (list of strings for multilabel); None when unlabelled.
        image_sources: where each unique image came from.
        source_rows: per row, its number in the source: the 1-based data row for tables (as in error
            messages), the 0-based index into the dataset for built-ins.
        text_columns / label_column: column names, for messages.
        label_names: the dataset's own label order (built-ins); None → derived from the data.
        issues: rows dropped while loading (on_error=skip).
        groups: (N,) long, rows that must stay together in the validation split and row limits (a clip and its
            reversed twin); None: rows sharing an image (see `row_groups`).
    """

    file: str
    images: Tensor | None
    image_index: Tensor | None
    texts: list[list[str]] | None
    labels: list[str] | list[list[str]] | None
    image_sources: list[str]
    source_rows: list[int]
    text_columns: list[str] = field(default_factory=list)
    label_column: str = "label"
    label_names: list[str] | None = None
    issues: list[DataIssue] = field(default_factory=list)
    groups: Tensor | None = None

    def __len__(self) -> int:
        return len(self.source_rows)

    def row_groups(self) -> np.ndarray:
        """(N,) each row's group: `groups`, else its image, else the row itself."""
        if self.groups is not None:
            return self.groups.numpy()
        return self.image_index.numpy() if self.image_index is not None else np.arange(len(self))

    def select(self, rows: Tensor | Sequence[int] | np.ndarray) -> RawSplit:
        """The given rows (positions), keeping only the images they use."""
        idx = _as_index(rows)
        pos = idx.tolist()
        images, image_index, sources = _take_images(self.images, self.image_index, self.image_sources, idx)
        return replace(
            self,
            images=images,
            image_index=image_index,
            image_sources=sources,
            texts=None if self.texts is None else [self.texts[i] for i in pos],
            labels=None if self.labels is None else [self.labels[i] for i in pos],
            source_rows=[self.source_rows[i] for i in pos],
            issues=list(self.issues),
            groups=None if self.groups is None else self.groups[idx],
        )


@dataclass
class SplitData:
    """One split as tensors (see docs/design.md)."""

    images: Tensor | None  # (M, C, H, W) uint8 unique images; clips: (M, F, C, H, W)
    image_index: Tensor | None  # (N,) long row -> image
    token_ids: Tensor | None  # (N, L) long
    token_mask: Tensor | None  # (N, L) bool
    labels: Tensor | None  # (N,) long | (N,) float | (N, K) float
    texts: list[str]
    image_sources: list[str]
    source_rows: list[int]
    # a frozen image tower's cached features of each unique image (tokens (M, N, D), pooled (M, D)); when set, batches
    # carry these instead of pixels. Attached after preparation (`vlfuse.features`); `subset` drops them.
    image_features: EncoderOutput | None = None

    def __len__(self) -> int:
        return len(self.source_rows)

    def subset(self, rows: Tensor | Sequence[int] | np.ndarray) -> SplitData:
        """The given rows (positions) as a new split; only the images still referenced are kept, reindexed."""
        idx = _as_index(rows)
        images, image_index, sources = _take_images(self.images, self.image_index, self.image_sources, idx)
        pos = idx.tolist()
        return SplitData(
            images=images,
            image_index=image_index,
            token_ids=None if self.token_ids is None else self.token_ids[idx],
            token_mask=None if self.token_mask is None else self.token_mask[idx],
            labels=None if self.labels is None else self.labels[idx],
            texts=[self.texts[i] for i in pos] if self.texts else [],
            image_sources=sources,
            source_rows=[self.source_rows[i] for i in pos],
        )


@dataclass
class PreparedData:
    train: SplitData
    val: SplitData
    test: SplitData | None
    tokenizer: TextTokenizer | None
    label_names: list[str]
    objective: str  # multiclass, binary or multilabel
    issues: list[DataIssue]


def sample_rows(n: int, k: int, seed: int, groups: Sequence | np.ndarray | None = None) -> np.ndarray:
    """k of n row positions chosen by `seed`, in ascending order (deterministic).

    With `groups` (e.g. each row's image), whole groups are taken in random order so that rows sharing an image
    stay together (only the last group taken may be cut).
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        return np.sort(rng.choice(n, size=min(k, n), replace=False))
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)  # (N,) group id per row
    rank = rng.permutation(int(inverse.max()) + 1)[inverse]  # (N,) random rank of each row's group
    return np.sort(np.argsort(rank, kind="stable")[:k])


def join_texts(texts: list[list[str]] | None, n: int) -> list[str]:
    """The display form of each row's text: columns joined with ' [SEP] ' ("" for data without text)."""
    if texts is None:
        return [""] * n
    return [row[0] if len(row) == 1 else " [SEP] ".join(row) for row in texts]


def split_by_group(
    groups: Sequence | np.ndarray, fraction: float, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (kept, held out): whole groups (rows sharing an image) are held out, in a random order fixed by
    `seed`, until about `fraction` of the rows are; at least one group on each side.

    The one validation split of every task: rows that share an image never straddle it.

    Raises:
        DataError: fewer than two groups (`source` names the data).
    """
    groups = np.asarray(groups)
    ids, counts = np.unique(groups, return_counts=True)
    if len(ids) < 2:
        raise DataError(f"{source}: cannot carve a validation split from a single image; expected at least two")
    order = np.random.default_rng(seed).permutation(len(ids))
    cumulative = np.cumsum(counts[order])
    k = int(np.argmin(np.abs(cumulative - fraction * len(groups)))) + 1
    k = min(max(k, 1), len(ids) - 1)
    held = np.isin(groups, ids[order[:k]])
    return np.flatnonzero(~held), np.flatnonzero(held)
