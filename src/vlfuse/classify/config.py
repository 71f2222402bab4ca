"""The classification config (`task: classify`, the default): the shared data / model / train sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vlfuse.config import DataConfig, ModelConfig, Section, TrainConfig


class ClassifyConfig(Section):
    task: Literal["classify"] = "classify"
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
