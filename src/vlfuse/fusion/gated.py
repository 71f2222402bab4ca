"""Gated multimodal unit (GMU, Arevalo et al. 2017): a learned, input-dependent convex mix of the two modalities."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from vlfuse.registry import FUSIONS, ComponentConfig
from vlfuse.types import EncoderOutput


class GatedConfig(ComponentConfig):
    name: Literal["gated"] = "gated"
    dim: int = Field(256, ge=1)  # width of the hidden representations h_v, h_t, of the gate z and of the output

    tiny: ClassVar[dict[str, Any]] = {"dim": 8}  # overrides for a fast test-sized variant


@FUSIONS.register("gated", GatedConfig)
class GatedFusion(nn.Module):
    """h = z ⊙ tanh(W_v v) + (1 − z) ⊙ tanh(W_t t), with gate z = σ(W_z [v; t]) → (B, dim).

    v and t are image.pooled and text.pooled. The gate's weight and bias start at zero, so z = ½ for every
    input and training starts from the *unfused path*: h = ½ (tanh(W_v v) + tanh(W_t t)), the plain average of the
    two projected modalities, with no input-dependent weighting. The gate still receives gradient,
    ∂h/∂z = h_v − h_t, and learns from there which modality to trust per feature and per sample.

    Args:
        cfg: the hidden width.
        image_dim: width of image.pooled.
        image_token_dim: width of image.tokens (unused).
        text_dim: width of text.pooled.
        text_token_dim: width of text.tokens (unused).
    """

    modalities: ClassVar[tuple[str, ...]] = ("image", "text")

    def __init__(
        self, cfg: GatedConfig, *, image_dim: int, image_token_dim: int, text_dim: int, text_token_dim: int
    ) -> None:
        super().__init__()
        self.image_proj = nn.Linear(image_dim, cfg.dim)
        self.text_proj = nn.Linear(text_dim, cfg.dim)
        self.gate = nn.Linear(image_dim + text_dim, cfg.dim)
        nn.init.zeros_(self.gate.weight)  # z = σ(0) = ½: start from the unfused average
        nn.init.zeros_(self.gate.bias)
        self.out_dim = cfg.dim

    def forward(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        assert image is not None and text is not None, "gated fusion needs both modalities"
        h_img = torch.tanh(self.image_proj(image.pooled))  # (B, dim)
        h_txt = torch.tanh(self.text_proj(text.pooled))  # (B, dim)
        z = torch.sigmoid(self.gate(torch.cat([image.pooled, text.pooled], dim=-1)))  # (B, dim)
        return z * h_img + (1 - z) * h_txt  # (B, dim)
