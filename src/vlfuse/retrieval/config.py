"""The retrieval experiment config (`task: retrieval`): data, captions, dual-encoder model and training budget.

Data keys are the shared `DataConfig` (image size and channels, augmentation, tokenizer, validation fraction, row
limits — counted in images here — and, for tables, `path` / `test_path` / `image_column`); the caption column of a
table and the caption templates of a built-in are in `captions`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializeAsAny, field_validator

from vlfuse.config import DataConfig, Section, TrainConfig
from vlfuse.registry import IMAGE_ENCODERS, TEXT_ENCODERS, ComponentConfig


class CaptionConfig(Section):
    """Which captions the images get (see `vlfuse.data.captions`)."""

    templates: Literal["train", "heldout", "all"] = "train"  # built-ins: caption template set used for training
    captions_per_image: int | None = Field(None, ge=1)  # built-ins: n random templates per image; None = all
    caption_column: str = "caption"  # tables: the column holding captions (rows sharing an image add captions)
    holdout: list[str] = Field(default_factory=list)  # keys ("red circle", "Sneaker") whose images and captions are
    # kept out of training and validation, for the zero-shot held-out evaluation on the test split


class DualEncoderConfig(Section):
    """Two towers from the encoder registries, each followed by a projection to a shared, L2-normalised space."""

    image_encoder: SerializeAsAny[ComponentConfig]
    text_encoder: SerializeAsAny[ComponentConfig]
    embed_dim: int = Field(128, ge=2)  # width of the shared space
    projection: Literal["linear", "mlp", "none"] = "linear"  # mlp: Linear-GELU-Linear; none: the towers' own space
    temperature: float = Field(0.07, gt=0.0, le=1.0)  # initial softmax temperature of the contrastive loss
    learn_temperature: bool = True
    max_logit_scale: float = Field(100.0, gt=1.0)  # 1 / temperature is clamped to this
    freeze_image: bool = False  # LiT: keep the (pretrained) image tower fixed, train text tower + projections
    freeze_text: bool = False

    @field_validator("image_encoder", mode="before")
    @classmethod
    def _image(cls, v: Any) -> Any:
        return IMAGE_ENCODERS.parse(v, "model.image_encoder")

    @field_validator("text_encoder", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return TEXT_ENCODERS.parse(v, "model.text_encoder")


class RetrievalConfig(Section):
    """A dual-encoder (contrastive) experiment: `vlfuse train CONFIG` trains it when `task: retrieval`."""

    task: Literal["retrieval"] = "retrieval"
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    captions: CaptionConfig = Field(default_factory=CaptionConfig)
    model: DualEncoderConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
