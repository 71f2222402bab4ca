"""The bridge config (`task: bridge`): the shared data / model / train sections, then the stages and evaluation.

    task: bridge
    data: {name: easy-vqa, image_size: 64}
    model: {image_encoder: {name: efficientnet_lite0, frozen: true}, language_model: ..., projector: ..., lora: ...}
    train: {batch_size: 32, precision: auto}      # every stage's defaults; device and threads for the whole run
    stages:
      - {objective: caption, train: {epochs: 1, lr: 0.002}}
      - {objective: mixed, rows_per_epoch: 4096, train: {epochs: 6, lr: 0.001}}

A stage's `train` is the same section type as the top-level one: the keys it sets override the top-level values.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from vlfuse.bridge.generate import GenerationConfig
from vlfuse.bridge.model import BridgeModelConfig
from vlfuse.config import DataConfig, Section, TrainConfig
from vlfuse.registry import IMAGE_ENCODERS, ComponentConfig

# stage objective → the objectives its validation scores (mixed: question and caption rows together, as LLaVA's
# second stage also keeps caption data, so answering questions does not make the LM forget how to caption)
STAGE_OBJECTIVES = {"caption": ("caption",), "vqa": ("vqa",), "mixed": ("vqa", "caption")}
TEST_OBJECTIVES = ("vqa", "caption")
RUN_WIDE_TRAIN_KEYS = ("device", "threads")  # one value for the whole run: set in the top-level train section
BRIDGE_TRAIN_DEFAULTS = {"epochs": 1, "batch_size": 32, "lr": 1e-3}


class BridgeModelSection(BridgeModelConfig):
    """The frozen image encoder (its features are cached on disk) and the bridge around the language model."""

    image_encoder: SerializeAsAny[ComponentConfig] = Field(
        default_factory=lambda: IMAGE_ENCODERS.parse({"name": "efficientnet_lite0", "resolution": 128},
                                                     "model.image_encoder")  # fmt: skip
    )

    @field_validator("image_encoder", mode="before")
    @classmethod
    def _image_encoder(cls, v: Any) -> Any:
        return IMAGE_ENCODERS.parse(v, "model.image_encoder")

    @field_validator("image_encoder")
    @classmethod
    def _frozen(cls, v: ComponentConfig) -> ComponentConfig:
        if not getattr(v, "frozen", False):
            raise ValueError("the bridge trains on cached features of a frozen encoder: use a pretrained encoder "
                             "with frozen: true (e.g. efficientnet_lite0)")  # fmt: skip
        return v


class BridgeStage(Section):
    objective: Literal["caption", "vqa", "mixed"]
    rows_per_epoch: int | None = Field(None, ge=1)  # a fresh random subset of the rows each epoch (None: all)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(**BRIDGE_TRAIN_DEFAULTS))


class BridgeEvalConfig(Section):
    val_fraction: float = Field(0.05, gt=0, lt=0.5)  # of the training images, held out with their rows
    val_rows: int = Field(256, ge=1)  # validation rows generated after each epoch (exact match / captions)
    test_questions: int | None = Field(None, ge=1)  # None: every test question
    test_captions: int | None = Field(None, ge=1)  # None: every test image with a caption
    batch_size: int = Field(64, ge=1)


class BridgeConfig(Section):
    task: Literal["bridge"] = "bridge"
    seed: int = 0
    data: DataConfig = Field(default_factory=lambda: DataConfig(name="easy-vqa"))
    model: BridgeModelSection = Field(default_factory=BridgeModelSection)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(**BRIDGE_TRAIN_DEFAULTS))
    stages: list[BridgeStage] = Field(min_length=1)
    caption_prompt: str = "Describe the image."
    caption_templates: int = Field(3, ge=1)  # easy-VQA caption phrasings per image in training
    generation: GenerationConfig = Field(default_factory=lambda: GenerationConfig(max_new_tokens=16))
    eval: BridgeEvalConfig = Field(default_factory=BridgeEvalConfig)

    @model_validator(mode="before")
    @classmethod
    def _stages_inherit_train(cls, raw: Any) -> Any:
        """Each stage's train section = the top-level one with the stage's own keys on top."""
        if not isinstance(raw, dict) or not isinstance(raw.get("stages"), list):
            return raw
        shared = raw.get("train") or {}
        if isinstance(shared, TrainConfig):
            shared = shared.model_dump()
        if not isinstance(shared, dict):
            return raw  # the field validator names the problem
        base = {**BRIDGE_TRAIN_DEFAULTS, **shared}
        stages = []
        for i, stage in enumerate(raw["stages"]):
            if isinstance(stage, dict) and isinstance(stage.get("train", {}), dict):
                own = stage.get("train", {})
                clash = [k for k in RUN_WIDE_TRAIN_KEYS
                         if k in own and own[k] != base.get(k, TrainConfig.model_fields[k].default)]  # fmt: skip
                if clash:
                    raise ValueError(f"stages.{i}.train.{clash[0]}: set it once, in the top-level train section")
                stage = {**stage, "train": {**base, **own}}
            stages.append(stage)
        return {**raw, "stages": stages}
