"""The zero-training real-photo config (`task: photo`): a ConSE dual encoder and a language model reading labels.

    model:      the dual encoder (default: `imagenet_conse` image tower + frozen MiniLM, no projection), so zero-shot
                labels, `vlfuse index` and `vlfuse search` work on real photos without training
    socratic:   how captions and answers are written: the top ImageNet labels with their probabilities go into the
                language model's prompt (Socratic Models, Zeng et al. 2022)
    data:       the captioned set a `vlfuse train` of this config is scored on (default: Tux Paint's stamps), and the
                image size (224: the classifier's own)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vlfuse.bridge.generate import GenerationConfig
from vlfuse.config import DataConfig, Section, TrainConfig
from vlfuse.retrieval.config import CaptionConfig, DualEncoderConfig


def default_model() -> DualEncoderConfig:
    return DualEncoderConfig(image_encoder={"name": "imagenet_conse"}, text_encoder={"name": "minilm"},
                             embed_dim=384, projection="none", learn_temperature=False)  # fmt: skip


class SocraticConfig(Section):
    """The language model's prompt: what the classifier sees, then an instruction."""

    language_model: str = "smollm2-135m-instruct"
    labels: int = Field(5, ge=1, le=20)  # top ImageNet labels written into the prompt
    min_probability: float = Field(0.02, ge=0.0, lt=1.0)  # labels below this are left out (the first always kept)
    seen: str = "An image classifier sees: {labels}."  # {labels}: "crow (81 %), magpie (7 %)"
    caption_instruction: str = "Describe the image in one short sentence."
    answer_instruction: str = "Answer in a few words: {question}"
    use_chat_template: bool = True  # wrap the prompt in the instruct model's chat template


class PhotoConfig(Section):
    """`vlfuse train CONFIG` with `task: photo` builds the run (nothing is trained) and scores it on `data`."""

    task: Literal["photo"] = "photo"
    seed: int = 0
    data: DataConfig = Field(default_factory=lambda: DataConfig(name="tuxpaint", image_size=224, on_error="skip"))
    captions: CaptionConfig = Field(default_factory=CaptionConfig)
    model: DualEncoderConfig = Field(default_factory=default_model)
    socratic: SocraticConfig = Field(default_factory=SocraticConfig)
    generation: GenerationConfig = Field(default_factory=lambda: GenerationConfig(max_new_tokens=24))
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=1, eval_batch_size=64))
    zeroshot_labels: Literal["imagenet"] = "imagenet"  # the default labels of `vlfuse zeroshot photo`: 1,000 names
