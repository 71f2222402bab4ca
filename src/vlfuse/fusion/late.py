"""Late (decision-level) fusion: one classifier per modality, their logits mixed by learned softmax weights."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from vlfuse.heads.mlp import MLPConfig, MLPHead
from vlfuse.registry import FUSIONS, ComponentConfig
from vlfuse.types import EncoderOutput


class LateConfig(ComponentConfig):
    name: Literal["late"] = "late"
    hidden: list[PositiveInt] = [256]  # hidden widths of each modality's MLP classifier; [] = a single Linear
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # after each hidden layer of the classifiers

    tiny: ClassVar[dict[str, Any]] = {"hidden": [8]}  # overrides for a fast test-sized variant


@FUSIONS.register("late", LateConfig)
class LateFusion(nn.Module):
    """logits = w_i · MLP_i(image.pooled) + w_t · MLP_t(text.pooled), (w_i, w_t) = softmax(a) → (B, K).

    This fusion produces the logits itself (`produces_logits = True`): build_model passes it `num_outputs` and puts
    no head after it (the model's head is nn.Identity and `model.head` in the config is ignored), so
    out_dim = num_outputs. The mixing logits `a` start at zero: the two classifiers are first averaged.

    The modalities meet only as a weighted sum of logits, so the model cannot represent interactions between them:
    it can learn "label = number of properties present" but not "label = image property XOR text property".

    Args:
        cfg: the classifiers' hidden widths and dropout.
        image_dim: width of image.pooled.
        image_token_dim: width of image.tokens (unused).
        text_dim: width of text.pooled.
        text_token_dim: width of text.tokens (unused).
        num_outputs: logits per sample K.
    """

    modalities: ClassVar[tuple[str, ...]] = ("image", "text")
    produces_logits: ClassVar[bool] = True  # build_model: pass num_outputs, use no head

    def __init__(
        self,
        cfg: LateConfig,
        *,
        image_dim: int,
        image_token_dim: int,
        text_dim: int,
        text_token_dim: int,
        num_outputs: int,
    ) -> None:
        super().__init__()
        head_cfg = MLPConfig(hidden=cfg.hidden, dropout=cfg.dropout)
        self.image_head = MLPHead(head_cfg, in_dim=image_dim, num_outputs=num_outputs)
        self.text_head = MLPHead(head_cfg, in_dim=text_dim, num_outputs=num_outputs)
        self.mix = nn.Parameter(torch.zeros(2))  # softmax → (w_image, w_text); equal at the start
        self.out_dim = num_outputs

    @property
    def weights(self) -> Tensor:
        """The mixing weights (w_image, w_text): non-negative, summing to 1."""
        return self.mix.softmax(dim=0)  # (2,)

    def forward(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        assert image is not None and text is not None, "late fusion needs both modalities"
        logits = torch.stack([self.image_head(image.pooled), self.text_head(text.pooled)], dim=-1)  # (B, K, 2)
        return logits @ self.weights  # (B, K)
