"""Shared data types and the shape legend used across vlfuse.

Shape legend:
    B  batch size
    C  image channels, H/W image height/width
    N  number of image tokens (feature-map cells or patches)
    T  frames of a clip a model reads; F the frames a clip keeps in memory
    L  number of text tokens (padded length)
    D  feature width (encoder specific)
    K  number of model outputs (classes, answers or labels)
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass
class EncoderOutput:
    """What every image or text encoder returns.

    Attributes:
        tokens: per-token features, (B, N, D_tok) for images or (B, L, D_tok) for text.
        pooled: one vector per sample, (B, D).
        mask: (B, N) or (B, L) bool, True where a token is real; None means all tokens are real.
    """

    tokens: Tensor
    pooled: Tensor
    mask: Tensor | None = None


@dataclass
class Batch:
    """A collated batch of samples.

    Attributes:
        image: (B, C, H, W) float, normalised, one per row; or (U, C, H, W) holding each distinct image of the batch
            once when `image_index` is given; clips (U, T, C, H, W) for video data; None for text-only data.
        text_ids: (B, L) long token ids, padded with the tokenizer's pad id; None for image-only data.
        text_mask: (B, L) bool, True for real tokens.
        label: (B,) long class ids (multiclass), (B,) float 0/1 (binary) or (B, K) float (multilabel); None at
            prediction time.
        index: (B,) long row numbers in the source split, to trace a prediction back to its row.
        image_index: (B,) long, row → position in `image` when rows share images; None means one image per row.
        image_present: (B,) bool, False for rows whose image is missing (the model's learned placeholder stands in;
            the row's pixels are ignored); None means every row has its image.
        text_present: (B,) bool, False for rows whose text is missing (likewise); None means every row has text.
        image_tokens: (U, N, D) cached features of the batch's distinct images from a frozen image tower, used
            instead of running it (`image` is then None); a clip's frames: (U, F, N, D); None: the tower runs on
            `image`.
        image_pooled: (U, D) the pooled cached features, alongside `image_tokens`.
    """

    image: Tensor | None
    text_ids: Tensor | None
    text_mask: Tensor | None
    label: Tensor | None = None
    index: Tensor | None = None
    image_index: Tensor | None = None
    image_present: Tensor | None = None
    text_present: Tensor | None = None
    image_tokens: Tensor | None = None
    image_pooled: Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: (v.to(device, non_blocking=True) if isinstance(v, Tensor) else v) for k, v in moved.items()})

    def __len__(self) -> int:
        for ref in (self.image_index, self.text_ids, self.label, self.index, self.image, self.image_present,
                    self.text_present, self.image_tokens):  # fmt: skip
            if ref is not None:
                return ref.shape[0]
        return 0
