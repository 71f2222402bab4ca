"""The built-in datasets' loaders, by `data.name`: each turns one official split into a RawSplit.

Those with captions (`BUILTIN_CAPTIONS`) also give their images as captioned images, for `vlfuse.data.captions`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from torch import Tensor

from vlfuse.config import DataConfig
from vlfuse.data.builtin import (
    BUILTIN_NAMES,
    easy_vqa,
    fashion_mnist,
    fashion_mnist_pairs,
    marketplace,
    moving_shapes,
    tuxpaint,
)
from vlfuse.data.splits import DataIssue, RawSplit
from vlfuse.errors import DataError

Loader = Callable[[str, DataConfig], RawSplit]
# one split as captioned images: (M, C, H, W) uint8 images, their sources, keys and attributes, and issues
CaptionParts = tuple[Tensor, list[str], list[str], list[dict[str, str]], list[DataIssue]]


class BuiltinCaptions(NamedTuple):
    """The caption side of a built-in dataset; an image's captions are its key put into the templates."""

    templates: Mapping[str, Sequence[str]]  # "train" (the first is the canonical caption) and "heldout"
    caption_images: Callable[[str, DataConfig], CaptionParts]  # (split, cfg) → one split's images, keys, ...
    label_prompt: Callable[[str, str, str], str]  # (dataset name, label, template) → the label in the template
    prompt_slots: tuple[str, ...]  # the template slots `label_prompt` fills


BUILTIN_DATASETS: dict[str, Loader] = {
    easy_vqa.NAME: easy_vqa.load,
    fashion_mnist.NAME: fashion_mnist.load,
    fashion_mnist_pairs.NAME: fashion_mnist_pairs.load,
    marketplace.NAME: marketplace.load,
    tuxpaint.NAME: tuxpaint.load,
    moving_shapes.NAME: moving_shapes.load,  # clips (M, T, C, S, S): the video task's data
}
assert tuple(BUILTIN_DATASETS) == BUILTIN_NAMES, "vlfuse.data.builtin.BUILTIN_NAMES lists every built-in, in order"
# data.options keys each built-in understands (with defaults); any other key is an error, not silently ignored.
BUILTIN_OPTIONS: dict[str, dict[str, object]] = {
    easy_vqa.NAME: {},
    fashion_mnist.NAME: {},
    fashion_mnist_pairs.NAME: dict(fashion_mnist_pairs.OPTIONS),
    marketplace.NAME: dict(marketplace.OPTIONS),
    tuxpaint.NAME: dict(tuxpaint.OPTIONS),
    moving_shapes.NAME: dict(moving_shapes.OPTIONS),
}
# the objective of each built-in dataset, when data.objective is not set (tables default to multiclass)
BUILTIN_OBJECTIVES: dict[str, str] = {fashion_mnist_pairs.NAME: "binary", marketplace.NAME: "multilabel"}
# the built-ins with captions (`vlfuse.data.captions` dispatches to them)
BUILTIN_CAPTIONS: dict[str, BuiltinCaptions] = {
    easy_vqa.NAME: BuiltinCaptions(
        easy_vqa.CAPTION_TEMPLATES, easy_vqa.caption_images, easy_vqa.label_prompt, easy_vqa.PROMPT_SLOTS
    ),
    fashion_mnist.NAME: BuiltinCaptions(
        fashion_mnist.CAPTION_TEMPLATES,
        fashion_mnist.caption_images,
        fashion_mnist.label_prompt,
        fashion_mnist.PROMPT_SLOTS,
    ),
    tuxpaint.NAME: BuiltinCaptions(
        tuxpaint.CAPTION_TEMPLATES, tuxpaint.caption_images, tuxpaint.label_prompt, tuxpaint.PROMPT_SLOTS
    ),
}
SPLITS = ("train", "test")


def default_objective(name: str) -> str:
    return BUILTIN_OBJECTIVES.get(name, "multiclass")


def load_builtin(name: str, split: str, cfg: DataConfig) -> RawSplit:
    """Load one split ("train" or "test") of a built-in dataset.

    Raises:
        DataError: unknown name / split, an unknown data.options key, or the dataset's files are unavailable.
    """
    if name not in BUILTIN_DATASETS:
        raise DataError(f"unknown dataset {name!r}; built-in datasets: {', '.join(BUILTIN_DATASETS)} (or 'table')")
    if split not in SPLITS:
        raise DataError(f"{name}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    unknown = sorted(set(cfg.options) - set(BUILTIN_OPTIONS[name]))
    if unknown:
        valid = ", ".join(BUILTIN_OPTIONS[name]) or "none"
        raise DataError(f"data.options: unknown key(s) {', '.join(unknown)} for dataset {name!r}; valid keys: {valid}")
    return BUILTIN_DATASETS[name](split, cfg)
