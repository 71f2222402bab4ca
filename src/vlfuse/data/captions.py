"""Caption data: images with one or more captions each, for retrieval, zero-shot labels and captioning.

Public API (everything a caption consumer needs):

    captioned_images(name, split, cfg=None, *, templates="train", captions_per_image=None, seed=0) -> CaptionedImages
        A built-in split ("easy-vqa" or "fashion-mnist"; "train" or "test") as images + captions.
    captioned_table(path, cfg=None, *, caption_column="caption", image_column="image") -> CaptionedImages
        A user table (CSV / JSONL / Parquet, via the table loader) with an image column and a caption column.
    caption_templates(name, which) / label_prompt(name, label, template)
        The caption templates ("train" templates for training, "heldout" ones a text tower never sees in training,
        for zero-shot prompts) and a label put into a template (a zero-shot prompt, or a built-in's caption).

`CaptionedImages` holds the unique images as the rest of the data code prepares them ((M, C, H, W) uint8 at
`cfg.image_size`), their sources ("easy-vqa:train/12", a file path), per image its captions (the first one is the
canonical form, e.g. "a red circle") and a `key`: what the captions describe ("red circle", "Trouser"). Two images
with the same key are interchangeable for retrieval: a caption of one is a correct caption of the other.

What each built-in knows stands next to it, and reaches this module through `vlfuse.data.builtin.BUILTIN_CAPTIONS`:
its templates, its images with their keys, and how a key fills a template. `vlfuse.data.builtin.easy_vqa` reads
colour and shape off the questions (`image_attributes_easy_vqa`, `easy_vqa_caption`, ...);
`vlfuse.data.builtin.fashion_mnist` captions the class names (`fashion_mnist_caption`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from vlfuse.config import DataConfig
from vlfuse.data.builtin import BUILTIN_CAPTIONS
from vlfuse.data.splits import DataIssue
from vlfuse.data.text import clean_text
from vlfuse.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CaptionedImages",
    "caption_key",
    "caption_templates",
    "captioned_images",
    "captioned_table",
    "label_prompt",
]

TEMPLATE_SETS = ("train", "heldout", "all")


def caption_templates(name: str, which: str = "train") -> list[str]:
    """The caption templates of a built-in dataset: "train", "heldout" (never used for training) or "all"."""
    if name not in BUILTIN_CAPTIONS:
        raise DataError(f"no caption templates for {name!r}; built-ins with captions: {', '.join(BUILTIN_CAPTIONS)}")
    if which not in TEMPLATE_SETS:
        raise DataError(f"caption template set {which!r} is unknown; expected one of {', '.join(TEMPLATE_SETS)}")
    sets = BUILTIN_CAPTIONS[name].templates
    return [*sets["train"], *sets["heldout"]] if which == "all" else list(sets[which])


def label_prompt(name: str, label: str, template: str) -> str:
    """A zero-shot prompt: a label name put into a template.

    Slots: `{}` takes the label as given; a built-in's own slots (its `prompt_slots`) it fills itself: `{a}` the
    label lower-cased with an article ("an ankle boot") and `{n}` without, for any label (Fashion-MNIST's); for
    easy-VQA labels ("red circle"), `{color}` and `{shape}` take its two words.

    Raises:
        DataError: the template has no slot, or a built-in's slots meet a label they do not fit (an easy-VQA
            template and a label that is not "<color> <shape>").
    """
    if "{}" in template:
        return template.replace("{}", label)
    for captions in BUILTIN_CAPTIONS.values():
        if any(slot in template for slot in captions.prompt_slots):
            return captions.label_prompt(name, label, template)
    slots = [slot for captions in BUILTIN_CAPTIONS.values() for slot in captions.prompt_slots]
    raise DataError(f"template {template!r} has no slot for the label; use {{}} or one of {', '.join(slots)}")


# ---------------------------------------------------------------- captioned images
@dataclass
class CaptionedImages:
    """Images with one or more captions each (see the module docstring).

    Attributes:
        file: where they came from, for messages ("easy-vqa:train", a table path).
        images: (M, C, H, W) uint8, each image once, at the data config's size.
        image_sources: per image, where it came from.
        captions: per image, its captions (at least one; the first is the canonical one).
        keys: per image, what its captions describe; equal keys = interchangeable for retrieval.
        attributes: per image, e.g. {"color": "red", "shape": "circle"} or {"class": "Trouser"}.
        issues: problems found while deriving captions (conflicting images, unusable rows), never silent.
    """

    file: str
    images: Tensor
    image_sources: list[str]
    captions: list[list[str]]
    keys: list[str]
    attributes: list[dict[str, str]]
    issues: list[DataIssue] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def select(self, positions: Sequence[int] | np.ndarray) -> CaptionedImages:
        """The given images (positions), in that order."""
        pos = [int(p) for p in positions]
        return replace(
            self,
            images=self.images[pos],  # (M', C, H, W)
            image_sources=[self.image_sources[p] for p in pos],
            captions=[self.captions[p] for p in pos],
            keys=[self.keys[p] for p in pos],
            attributes=[self.attributes[p] for p in pos],
        )


def _pick_templates(
    templates: list[str], n_images: int, captions_per_image: int | None, rng: np.random.Generator
) -> list[list[int]]:
    """Per image, which template indices it gets: all (canonical first), or `captions_per_image` drawn at random."""
    if captions_per_image is None or captions_per_image >= len(templates):
        return [list(range(len(templates)))] * n_images
    if captions_per_image < 1:
        raise DataError(f"captions_per_image must be at least 1, got {captions_per_image}")
    return [sorted(rng.choice(len(templates), captions_per_image, replace=False).tolist()) for _ in range(n_images)]


def captioned_images(
    name: str,
    split: str,
    cfg: DataConfig | None = None,
    *,
    templates: str = "train",
    captions_per_image: int | None = None,
    seed: int = 0,
) -> CaptionedImages:
    """A built-in split as captioned images: each image's key put into the templates (`label_prompt`).

    Args:
        name: "easy-vqa" (images whose colour and shape are known) or "fashion-mnist" (every image).
        split: "train" or "test".
        cfg: image size / channels / data root (default: `DataConfig()` with the dataset name).
        templates: caption template set, "train", "heldout" or "all".
        captions_per_image: captions per image, drawn at random from the set (deterministic in `seed`); None: all
            of them, canonical template first.
        seed: for the caption draw.

    Raises:
        DataError: unknown dataset / split / template set, or the dataset is not installed.
    """
    cfg = (cfg or DataConfig()).model_copy(update={"name": name, "options": {}})
    chosen = caption_templates(name, templates)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    builtin = BUILTIN_CAPTIONS[name]
    images, sources, keys, attributes, issues = builtin.caption_images(split, cfg)  # images: (M, C, H, W)
    picks = _pick_templates(chosen, len(keys), captions_per_image, rng)
    return CaptionedImages(
        file=f"{name}:{split}",
        images=images,
        image_sources=sources,
        captions=[[builtin.label_prompt(name, k, chosen[t]) for t in ts] for k, ts in zip(keys, picks, strict=True)],
        keys=keys,
        attributes=attributes,
        issues=issues,
    )


def caption_key(caption: str) -> str:
    """The key of a free-form caption: its cleaned form (case, punctuation and spacing do not matter)."""
    return clean_text(caption)


def captioned_table(
    source: str | Path | pd.DataFrame,
    cfg: DataConfig | None = None,
    *,
    caption_column: str = "caption",
    image_column: str = "image",
    base_dir: str | Path | None = None,
) -> CaptionedImages:
    """A user table with an image column and a caption column, through the table loader.

    Rows sharing an image give that image several captions (in table order). An image's key is its first
    caption's cleaned form. Bad rows (missing image, empty caption) raise under `cfg.on_error='raise'` (naming file,
    row and column) or are skipped and listed in `issues` under 'skip'. Relative image paths resolve against
    `base_dir` (default: the table's folder; the current directory for a DataFrame).
    """
    from vlfuse.data.tables import load_table_split

    cfg = (cfg or DataConfig()).model_copy(
        update={"name": "table", "image_column": image_column, "text_columns": [caption_column]}
    )
    raw = load_table_split(source, cfg, base_dir=base_dir, with_labels=False)
    captions: list[list[str]] = [[] for _ in raw.image_sources]
    for pos, image in enumerate(raw.image_index.tolist()):
        captions[image].append(raw.texts[pos][0])
    return CaptionedImages(
        file=raw.file,
        images=raw.images,
        image_sources=list(raw.image_sources),
        captions=captions,
        keys=[caption_key(c[0]) for c in captions],
        attributes=[{"caption": c[0]} for c in captions],
        issues=list(raw.issues),
    )
