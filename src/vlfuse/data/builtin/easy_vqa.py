"""easy-VQA (PyPI `easy-vqa`): 64×64 shape images with questions; answers are one of 13 words.

Official split: 4,000 train images / 38,575 questions and 1,000 test images / 9,673 questions.
"""

from __future__ import annotations

import logging

import torch

from vlfuse.config import DataConfig
from vlfuse.data.images import load_images
from vlfuse.data.splits import RawSplit
from vlfuse.errors import DataError

log = logging.getLogger(__name__)

NAME = "easy-vqa"


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
