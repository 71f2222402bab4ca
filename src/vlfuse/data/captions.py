"""Caption data: images with one or more captions each, for retrieval, zero-shot labels and captioning.

Public API (everything a caption consumer needs):

    image_attributes_easy_vqa(split) -> {image_id: {"color": "red", "shape": "circle"}}
        Colour and shape of each easy-VQA image, read off its questions and answers (see below).
    captioned_images(name, split, cfg=None, *, templates="train", captions_per_image=None, seed=0) -> CaptionedImages
        A built-in split ("easy-vqa" or "fashion-mnist"; "train" or "test") as images + captions.
    captioned_table(path, cfg=None, *, caption_column="caption", image_column="image") -> CaptionedImages
        A user table (CSV / JSONL / Parquet, via the table loader) with an image column and a caption column.
    caption_templates(name, which) / easy_vqa_caption(color, shape, template) / fashion_mnist_caption(cls, template)
        The caption templates ("train" templates for training, "heldout" ones a text tower never sees in training,
        for zero-shot prompts) and single captions.

`CaptionedImages` holds the unique images as the rest of the data code prepares them ((M, C, H, W) uint8 at
`cfg.image_size`), their sources ("easy-vqa:train/12", a file path), per image its captions (the first one is the
canonical form, e.g. "a red circle") and a `key`: what the captions describe ("red circle", "Trouser"). Two images
with the same key are interchangeable for retrieval: a caption of one is a correct caption of the other.

easy-VQA attributes. Every easy-VQA question follows one of 24 templates (`QUESTION_TEMPLATES`). Each answered
question gives facts about its image: "what shape is present?" → shape = answer; "what color is the circle?" →
colour = answer and shape = circle; "is there not a red shape?" answered "no" → colour = red; answered "yes" →
colour ≠ red. An attribute is known when a fact names it, or when the negative facts exclude all values but one.
Images whose facts contradict each other are left out and reported as `DataIssue`s (the data shipped with
easy-vqa 1.0 has none; a question matching no template or with an impossible answer is reported the same way).
Known: train 3,542 / 4,000 images with both colour and shape named directly, 3,578 with elimination; test
880 + 8 = 888 / 1,000 (checked against the pixels in tests/data/test_captions.py).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from torch import Tensor

from vlfuse.config import DataConfig
from vlfuse.data.splits import DataIssue
from vlfuse.data.text import clean_text
from vlfuse.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "COLORS",
    "SHAPES",
    "CaptionedImages",
    "caption_templates",
    "captioned_images",
    "captioned_table",
    "derive_easy_vqa_attributes",
    "easy_vqa_caption",
    "easy_vqa_key",
    "fashion_mnist_caption",
    "image_attributes_easy_vqa",
]

EASY_VQA = "easy-vqa"
FASHION_MNIST = "fashion-mnist"
COLORS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
SHAPES = ("circle", "rectangle", "triangle")
_VALUES = {"color": COLORS, "shape": SHAPES}

# ---------------------------------------------------------------- easy-VQA questions → attributes
# Each template: the question with {color} / {shape} slots, what the answer says, and whether a "yes" means the
# named value is present (presence questions) — None for "what ..." questions, whose answer is the value itself.
QUESTION_TEMPLATES: list[tuple[str, str, bool | None]] = [
    *[(q, "color", True) for q in ("is a {color} shape present", "is there a {color} shape",
                                   "is there a {color} shape in the image", "does the image contain a {color} shape")],
    *[(q, "color", False) for q in ("is no {color} shape present", "is there not a {color} shape",
                                    "is there not a {color} shape in the image",
                                    "does the image not contain a {color} shape")],
    *[(q, "shape", True) for q in ("is a {shape} present", "is there a {shape}", "is there a {shape} in the image",
                                   "does the image contain a {shape}")],
    *[(q, "shape", False) for q in ("is no {shape} present", "is there not a {shape}",
                                    "is there not a {shape} in the image", "does the image not contain a {shape}")],
    *[(q, "color", None) for q in ("what color is the shape", "what is the color of the shape",
                                   "what color is the {shape}", "what is the color of the {shape}")],
    *[(q, "shape", None) for q in ("what shape is in the image", "what shape does the image contain",
                                   "what shape is present", "what is the {color} shape")],
]  # fmt: skip


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.escape(template).replace(r"\{color\}", "{color}").replace(r"\{shape\}", "{shape}")
    pattern = pattern.format(color=f"(?P<color>{'|'.join(COLORS)})", shape=f"(?P<shape>{'|'.join(SHAPES)})")
    return re.compile(f"^{pattern}\\?$")


_QUESTION_PATTERNS = [(_compile(t), attr, positive) for t, attr, positive in QUESTION_TEMPLATES]


@dataclass
class _Facts:
    """What the questions of one image say: per attribute, values it has and values it has not (with the row)."""

    has: dict[str, dict[str, int]] = field(default_factory=lambda: {"color": {}, "shape": {}})
    has_not: dict[str, dict[str, int]] = field(default_factory=lambda: {"color": {}, "shape": {}})


def _question_facts(question: str, answer: str) -> list[tuple[str, str, bool]] | str:
    """(attribute, value, holds) facts of one answered question, or a message saying why it cannot be used."""
    for pattern, attr, positive in _QUESTION_PATTERNS:
        match = pattern.match(question)
        if match is None:
            continue
        named = {k: v for k, v in match.groupdict().items() if v}  # values the question itself names
        if positive is None:  # "what ..." question: the answer is the attribute's value
            if answer not in _VALUES[attr]:
                return f"answer {answer!r} to a question about the {attr}; expected one of {', '.join(_VALUES[attr])}"
            return [(attr, answer, True), *[(a, v, True) for a, v in named.items()]]
        if answer not in ("yes", "no"):
            return f"answer {answer!r} to a yes/no question; expected 'yes' or 'no'"
        return [(attr, named[attr], (answer == "yes") == positive)]
    return "question matches none of the easy-VQA question templates (vlfuse.data.captions.QUESTION_TEMPLATES)"


def derive_easy_vqa_attributes(
    texts: Sequence[str], answers: Sequence[str], image_ids: Sequence[int], *, file: str = EASY_VQA
) -> tuple[dict[int, dict[str, str | None]], list[DataIssue]]:
    """Colour and shape of every image from its answered questions.

    Args:
        texts / answers / image_ids: the three parallel lists easy-vqa returns.
        file: the source named in issues (e.g. "easy-vqa:train").

    Returns:
        attributes: image id → {"color": value or None, "shape": value or None} for every image without conflicts.
        issues: one per unusable question (row = its 0-based index) and per image whose facts contradict each other.
    """
    facts: dict[int, _Facts] = defaultdict(_Facts)
    issues: list[DataIssue] = []
    for row, (question, answer, image_id) in enumerate(zip(texts, answers, image_ids, strict=True)):
        found = _question_facts(question.strip().lower(), answer.strip().lower())
        if isinstance(found, str):
            issues.append(DataIssue(file, row, "question", f"{question!r}: {found}"))
            continue
        record = facts[image_id]
        for attr, value, holds in found:
            (record.has if holds else record.has_not)[attr].setdefault(value, row)
    attributes: dict[int, dict[str, str | None]] = {}
    for image_id, record in facts.items():
        resolved: dict[str, str | None] = {}
        conflict = None
        for attr, values in _VALUES.items():
            has, has_not = record.has[attr], record.has_not[attr]
            clash = sorted(set(has) & set(has_not))
            if len(has) > 1:
                (a, ra), (b, rb) = sorted(has.items(), key=lambda kv: kv[1])[:2]
                conflict = DataIssue(file, rb, "question", f"image {image_id}: {attr} {b!r} here, {a!r} at row {ra}")
            elif clash:
                value = clash[0]
                conflict = DataIssue(
                    file, has_not[value], "question",
                    f"image {image_id}: {attr} is not {value!r} here, but is {value!r} at row {has[value]}",
                )  # fmt: skip
            elif len(has_not) == len(values):
                conflict = DataIssue(file, max(has_not.values()), "question", f"image {image_id}: no {attr} is left")
            if conflict is not None:
                break
            left = [v for v in values if v not in has_not]
            resolved[attr] = next(iter(has)) if has else (left[0] if len(left) == 1 else None)
        if conflict is not None:
            issues.append(conflict)
            continue
        attributes[image_id] = resolved
    return attributes, issues


def _easy_vqa_questions(split: str) -> tuple[list[str], list[str], list[int], dict[int, str]]:
    try:
        import easy_vqa
    except ImportError:
        raise DataError("easy-VQA captions need the easy-vqa package: pip install easy-vqa==1.0") from None
    if split == "train":
        return (*easy_vqa.get_train_questions(), easy_vqa.get_train_image_paths())
    if split == "test":
        return (*easy_vqa.get_test_questions(), easy_vqa.get_test_image_paths())
    raise DataError(f"{EASY_VQA}: unknown split {split!r}; expected 'train' or 'test'")


def easy_vqa_attributes_with_issues(split: str) -> tuple[dict[int, dict[str, str | None]], list[DataIssue]]:
    """`derive_easy_vqa_attributes` on one official split: (attributes of every image, issues)."""
    texts, answers, image_ids, _ = _easy_vqa_questions(split)
    attributes, issues = derive_easy_vqa_attributes(texts, answers, image_ids, file=f"{EASY_VQA}:{split}")
    if issues:
        log.warning("%s:%s: %d question issue(s) / conflicting images; first: %s", EASY_VQA, split, len(issues),
                    issues[0])  # fmt: skip
    return attributes, issues


def image_attributes_easy_vqa(split: str, *, complete: bool = True) -> dict[int, dict[str, str | None]]:
    """Colour and shape of the easy-VQA images of one split, from their questions and answers.

    Args:
        split: "train" or "test".
        complete: only images whose colour and shape are both known (True), or every image without conflicts,
            with None for an unknown attribute (False).

    Returns:
        image id (as easy-vqa numbers them) → {"color": ..., "shape": ...}. Conflicting images are left out and
        logged as warnings (`easy_vqa_attributes_with_issues` returns them).
    """
    attributes, _ = easy_vqa_attributes_with_issues(split)
    if not complete:
        return attributes
    return {i: a for i, a in attributes.items() if a["color"] is not None and a["shape"] is not None}


# ---------------------------------------------------------------- caption templates
# easy-VQA: {color} / {shape}. The first training template is the canonical caption.
EASY_VQA_TEMPLATES = {
    "train": [
        "a {color} {shape}",
        "a {color} {shape} on a plain background",
        "a picture of a {color} {shape}",
        "there is a {color} {shape} in the image",
        "a {shape} that is {color}",
        "the image shows a {color} {shape}",
    ],
    "heldout": [
        "a photo of a {color} {shape}",
        "one {color} {shape}",
        "a drawing of a {shape} in {color}",
        "an image containing a {color} {shape}",
    ],
}
# Fashion-MNIST: {a} = the class name with its article ("an ankle boot"), {n} = the bare class name.
FASHION_MNIST_TEMPLATES = {
    "train": [
        "{a}",
        "an image of {a}",
        "a picture of {a}",
        "{a} on a dark background",
        "a greyscale image of {a}",
        "this is {a}",
        "a small {n}",
        "there is {a} in the image",
    ],
    "heldout": [
        "a photo of {a}",
        "a low resolution photo of {a}",
        "a black and white photo of {a}",
        "a product photo of {a}",
        "it is {a}",
    ],
}
_TEMPLATES = {EASY_VQA: EASY_VQA_TEMPLATES, FASHION_MNIST: FASHION_MNIST_TEMPLATES}
TEMPLATE_SETS = ("train", "heldout", "all")


def caption_templates(name: str, which: str = "train") -> list[str]:
    """The caption templates of a built-in dataset: "train", "heldout" (never used for training) or "all"."""
    if name not in _TEMPLATES:
        raise DataError(f"no caption templates for {name!r}; built-ins with captions: {', '.join(_TEMPLATES)}")
    if which not in TEMPLATE_SETS:
        raise DataError(f"caption template set {which!r} is unknown; expected one of {', '.join(TEMPLATE_SETS)}")
    sets = _TEMPLATES[name]
    return [*sets["train"], *sets["heldout"]] if which == "all" else list(sets[which])


def with_article(phrase: str) -> str:
    """'an ankle boot', 'a dress' (by the first letter; good enough for the built-in names)."""
    return f"{'an' if phrase[:1].lower() in 'aeiou' else 'a'} {phrase}"


def easy_vqa_key(color: str, shape: str) -> str:
    """The key (and zero-shot label name) of an easy-VQA colour-shape combination: "red circle"."""
    return f"{color} {shape}"


def easy_vqa_caption(color: str, shape: str, template: str = EASY_VQA_TEMPLATES["train"][0]) -> str:
    return template.format(color=color, shape=shape)


def fashion_mnist_caption(class_name: str, template: str = FASHION_MNIST_TEMPLATES["train"][0]) -> str:
    """A caption from a Fashion-MNIST class name ("Ankle boot" → "an ankle boot" with the default template)."""
    name = class_name.lower()
    return template.format(a=with_article(name), n=name)


def label_prompt(name: str, label: str, template: str) -> str:
    """A zero-shot prompt: a label name put into a template.

    Slots: `{}` takes the label as given; `{a}` its lower-cased form with an article ("an ankle boot") and `{n}`
    without; for easy-VQA labels ("red circle"), `{color}` and `{shape}` take its two words.

    Raises:
        DataError: the template has no slot, or an easy-VQA template meets a label that is not "<color> <shape>".
    """
    if "{}" in template:
        return template.replace("{}", label)
    if "{color}" in template or "{shape}" in template:
        parts = label.split()
        if name != EASY_VQA or len(parts) != 2 or parts[0] not in COLORS or parts[1] not in SHAPES:
            raise DataError(
                f"template {template!r} needs an easy-VQA label '<color> <shape>' (colors: {', '.join(COLORS)}; "
                f"shapes: {', '.join(SHAPES)}), got {label!r}"
            )
        return easy_vqa_caption(parts[0], parts[1], template)
    if "{a}" in template or "{n}" in template:
        return fashion_mnist_caption(label, template)
    raise DataError(f"template {template!r} has no slot for the label; use {{}}, {{a}} or {{n}} (easy-VQA also "
                    "{color} and {shape})")  # fmt: skip


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
    """A built-in split as captioned images.

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
    if name == EASY_VQA:
        from vlfuse.data.builtin import easy_vqa

        attributes, issues = easy_vqa_attributes_with_issues(split)
        raw = easy_vqa.load(split, cfg)  # images in sorted-id order, sources "easy-vqa:<split>/<id>"
        ids = [int(s.rsplit("/", 1)[1]) for s in raw.image_sources]
        keep = [p for p, i in enumerate(ids) if i in attributes and None not in attributes[i].values()]
        log.info("%s:%s: %d of %d images have a known colour and shape", name, split, len(keep), len(ids))
        attrs = [{k: str(v) for k, v in attributes[ids[p]].items()} for p in keep]
        picks = _pick_templates(chosen, len(keep), captions_per_image, rng)
        pairs = zip(attrs, picks, strict=True)
        return CaptionedImages(
            file=f"{name}:{split}",
            images=raw.images[keep],  # (M, C, H, W)
            image_sources=[raw.image_sources[p] for p in keep],
            captions=[[easy_vqa_caption(a["color"], a["shape"], chosen[t]) for t in ts] for a, ts in pairs],
            keys=[easy_vqa_key(a["color"], a["shape"]) for a in attrs],
            attributes=attrs,
            issues=issues,
        )
    if name == FASHION_MNIST:
        from vlfuse.data.builtin import fashion_mnist

        images, classes = fashion_mnist.load_arrays(split, cfg)  # (M, C, S, S), (M,)
        names = [fashion_mnist.CLASSES[c] for c in classes.tolist()]
        picks = _pick_templates(chosen, len(names), captions_per_image, rng)
        return CaptionedImages(
            file=f"{name}:{split}",
            images=images,
            image_sources=[f"{name}:{split}/{i}" for i in range(len(names))],
            captions=[[fashion_mnist_caption(n, chosen[t]) for t in ts] for n, ts in zip(names, picks, strict=True)],
            keys=names,
            attributes=[{"class": n} for n in names],
        )
    raise DataError(f"no captions for dataset {name!r}; built-ins with captions: {', '.join(_TEMPLATES)} (or a table)")


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
