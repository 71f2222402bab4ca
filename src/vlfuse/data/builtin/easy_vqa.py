"""easy-VQA (PyPI `easy-vqa`): 64×64 shape images with questions; answers are one of 13 words.

Official split: 4,000 train images / 38,575 questions and 1,000 test images / 9,673 questions.

Attributes and captions. Every easy-VQA question follows one of 24 templates (`QUESTION_TEMPLATES`). Each answered
question gives facts about its image: "what shape is present?" → shape = answer; "what color is the circle?" →
colour = answer and shape = circle; "is there not a red shape?" answered "no" → colour = red; answered "yes" →
colour ≠ red. An attribute is known when a fact names it, or when the negative facts exclude all values but one.
Images whose facts contradict each other are left out and reported as `DataIssue`s (the data shipped with
easy-vqa 1.0 has none; a question matching no template or with an impossible answer is reported the same way).
Known: train 3,542 / 4,000 images with both colour and shape named directly, 3,578 with elimination; test
880 + 8 = 888 / 1,000 (checked against the pixels in tests/data/test_captions.py). An image's key is its colour and
shape ("red circle"), its captions that key put into `CAPTION_TEMPLATES` (see `vlfuse.data.captions`).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from vlfuse.config import DataConfig
from vlfuse.data.images import load_images
from vlfuse.data.splits import DataIssue, RawSplit
from vlfuse.errors import DataError

log = logging.getLogger(__name__)

NAME = "easy-vqa"
COLORS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
SHAPES = ("circle", "rectangle", "triangle")
_VALUES = {"color": COLORS, "shape": SHAPES}


def load(split: str, cfg: DataConfig) -> RawSplit:
    """Questions (text column "question") and answers (label "answer") of one official split; each image once."""
    try:
        import easy_vqa
    except ImportError:
        raise DataError("data.name 'easy-vqa' needs the easy-vqa package: pip install easy-vqa==1.0") from None
    if split == "train":
        texts, answers, image_ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
    elif split == "test":
        texts, answers, image_ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
    else:
        raise DataError(f"{NAME}: unknown split {split!r}; expected 'train' or 'test'")
    answer_names = easy_vqa.get_answers()

    ids = sorted(paths)
    missing = sorted(set(image_ids) - set(paths))
    if missing:
        raise DataError(f"{NAME}:{split}: questions refer to image ids without a PNG file, e.g. {missing[:5]}")
    images, errors = load_images([paths[i] for i in ids], size=cfg.image_size, channels=cfg.channels)  # (M, C, S, S)
    if errors:
        first = next(iter(errors.values()))
        raise DataError(f"{NAME}:{split}: {len(errors)} image(s) cannot be decoded (broken install?); first: {first}")
    slot = {image_id: i for i, image_id in enumerate(ids)}
    image_index = torch.tensor([slot[i] for i in image_ids], dtype=torch.long)  # (N,)
    log.info("%s %s: %d questions on %d images", NAME, split, len(texts), len(ids))
    return RawSplit(
        file=f"{NAME}:{split}",
        images=images,
        image_index=image_index,
        texts=[[t] for t in texts],
        labels=list(answers),
        image_sources=[f"{NAME}:{split}/{i}" for i in ids],
        source_rows=list(range(len(texts))),
        text_columns=["question"],
        label_column="answer",
        label_names=list(answer_names),
    )


# ---------------------------------------------------------------- questions → attributes
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
    return "question matches none of the easy-VQA question templates (vlfuse.data.builtin.easy_vqa.QUESTION_TEMPLATES)"


def derive_easy_vqa_attributes(
    texts: Sequence[str], answers: Sequence[str], image_ids: Sequence[int], *, file: str = NAME
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
    raise DataError(f"{NAME}: unknown split {split!r}; expected 'train' or 'test'")


def easy_vqa_attributes_with_issues(split: str) -> tuple[dict[int, dict[str, str | None]], list[DataIssue]]:
    """`derive_easy_vqa_attributes` on one official split: (attributes of every image, issues)."""
    texts, answers, image_ids, _ = _easy_vqa_questions(split)
    attributes, issues = derive_easy_vqa_attributes(texts, answers, image_ids, file=f"{NAME}:{split}")
    if issues:
        log.warning("%s:%s: %d question issue(s) / conflicting images; first: %s", NAME, split, len(issues),
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


# ---------------------------------------------------------------- captions
# {color} / {shape}. The first training template is the canonical caption.
CAPTION_TEMPLATES = {
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
PROMPT_SLOTS = ("{color}", "{shape}")  # the template slots `label_prompt` fills


def easy_vqa_key(color: str, shape: str) -> str:
    """The key (and zero-shot label name) of an easy-VQA colour-shape combination: "red circle"."""
    return f"{color} {shape}"


def easy_vqa_caption(color: str, shape: str, template: str = CAPTION_TEMPLATES["train"][0]) -> str:
    return template.format(color=color, shape=shape)


def label_prompt(name: str, label: str, template: str) -> str:
    """An easy-VQA label ("red circle") put into a template with {color} / {shape} slots.

    Raises:
        DataError: the label is not "<color> <shape>" of easy-VQA (or `name` is another dataset).
    """
    parts = label.split()
    if name != NAME or len(parts) != 2 or parts[0] not in COLORS or parts[1] not in SHAPES:
        raise DataError(
            f"template {template!r} needs an easy-VQA label '<color> <shape>' (colors: {', '.join(COLORS)}; "
            f"shapes: {', '.join(SHAPES)}), got {label!r}"
        )
    return easy_vqa_caption(parts[0], parts[1], template)


def caption_images(
    split: str, cfg: DataConfig
) -> tuple[Tensor, list[str], list[str], list[dict[str, str]], list[DataIssue]]:
    """The images of one split whose colour and shape are known: (images, sources, keys, attributes, issues)."""
    attributes, issues = easy_vqa_attributes_with_issues(split)
    raw = load(split, cfg)  # images in sorted-id order, sources "easy-vqa:<split>/<id>"
    ids = [int(s.rsplit("/", 1)[1]) for s in raw.image_sources]
    keep = [p for p, i in enumerate(ids) if i in attributes and None not in attributes[i].values()]
    log.info("%s:%s: %d of %d images have a known colour and shape", NAME, split, len(keep), len(ids))
    attrs = [{k: str(v) for k, v in attributes[ids[p]].items()} for p in keep]
    keys = [easy_vqa_key(a["color"], a["shape"]) for a in attrs]
    return raw.images[keep], [raw.image_sources[p] for p in keep], keys, attrs, issues  # images: (M, C, H, W)
