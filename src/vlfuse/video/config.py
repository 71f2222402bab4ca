"""The video config (`task: video`): the classify sections with clips for images (`data.video`) and a temporal
module over the per-frame image tower (`model.temporal`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializeAsAny, field_validator

from vlfuse.classify.config import ClassifyConfig
from vlfuse.config import ModelConfig, VideoDataConfig
from vlfuse.registry import TEMPORAL_MODULES, ComponentConfig


class VideoModelConfig(ModelConfig):
    """`image_encoder` runs on every frame; `temporal` turns the frames' features into the clip's (the image side of
    the fusion)."""

    temporal: SerializeAsAny[ComponentConfig] = Field(
        default_factory=lambda: TEMPORAL_MODULES.parse("transformer", "model.temporal")
    )

    @field_validator("temporal", mode="before")
    @classmethod
    def _temporal(cls, v: Any) -> Any:
        return TEMPORAL_MODULES.parse(v, "model.temporal")


class VideoConfig(ClassifyConfig):
    task: Literal["video"] = "video"  # type: ignore[assignment]
    data: VideoDataConfig = Field(default_factory=VideoDataConfig)  # type: ignore[assignment]
    model: VideoModelConfig  # type: ignore[assignment]
