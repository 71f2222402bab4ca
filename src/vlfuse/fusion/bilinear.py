"""Low-rank bilinear pooling (MFB, Yu et al. 2017) of the pooled image and text features."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from vlfuse.registry import FUSIONS, ComponentConfig
from vlfuse.types import EncoderOutput


class BilinearConfig(ComponentConfig):
    name: Literal["bilinear"] = "bilinear"
    dim: int = Field(256, ge=1)  # output width o
    factor: int = Field(5, ge=1)  # rank k of each output's bilinear form; both inputs are projected to k·dim
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # on the k·dim joint product, before sum-pooling

    tiny: ClassVar[dict[str, Any]] = {"dim": 8, "factor": 2}  # overrides for a fast test-sized variant


@FUSIONS.register("bilinear", BilinearConfig)
class BilinearFusion(nn.Module):
    """Multi-modal factorised bilinear pooling → (B, dim), unit L2 norm per row.

    z = SumPool_k(U · i ⊙ W · t) for i = image.pooled, t = text.pooled, so each z_o = Σ_k (u_ok·i)(w_ok·t) is the
    bilinear form iᵀ M_o t with M_o = Σ_k u_ok w_okᵀ of rank ≤ k (plus linear terms from the biases); then the signed
    square root sign(z)·√|z| and L2 normalisation.

    Args:
        cfg: output width, rank factor and dropout.
        image_dim: width of image.pooled.
        image_token_dim: width of image.tokens (unused).
        text_dim: width of text.pooled.
        text_token_dim: width of text.tokens (unused).
    """

    modalities: ClassVar[tuple[str, ...]] = ("image", "text")
    eps: ClassVar[float] = 1e-8  # inside the signed square root, which keeps its gradient finite at 0

    def __init__(
        self, cfg: BilinearConfig, *, image_dim: int, image_token_dim: int, text_dim: int, text_token_dim: int
    ) -> None:
        super().__init__()
        self.image_proj = nn.Linear(image_dim, cfg.factor * cfg.dim)
        self.text_proj = nn.Linear(text_dim, cfg.factor * cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.factor = cfg.factor
        self.out_dim = cfg.dim

    def forward(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        assert image is not None and text is not None, "bilinear fusion needs both modalities"
        joint = self.image_proj(image.pooled) * self.text_proj(text.pooled)  # (B, k·dim)
        joint = self.dropout(joint)
        z = joint.unflatten(-1, (self.out_dim, self.factor)).sum(dim=-1)  # (B, dim): sum over each group of k
        z = torch.sign(z) * torch.sqrt(z.abs() + self.eps)  # (B, dim), signed square root
        return F.normalize(z, dim=-1)  # (B, dim)
