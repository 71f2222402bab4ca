"""FiLM fusion (Perez et al. 2018): the pooled text scales and shifts every channel of the image tokens."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from vlfuse.layers import masked_mean, projection
from vlfuse.registry import FUSIONS, ComponentConfig
from vlfuse.types import EncoderOutput


class FiLMConfig(ComponentConfig):
    name: Literal["film"] = "film"
    dim: int = Field(128, ge=1)  # width the image tokens are projected to and modulated in
    with_text: bool = True  # also concatenate text.pooled projected to dim (Linear + LayerNorm): out 2·dim, else dim

    tiny: ClassVar[dict[str, Any]] = {"dim": 8}  # overrides for a fast test-sized variant


@FUSIONS.register("film", FiLMConfig)
class FiLMFusion(nn.Module):
    """mean_N ReLU(γ ⊙ W · image.tokens + β), [γ − 1; β] = Linear(text.pooled) → (B, dim) [+ projected text].

    The FiLM generator starts at zero, so γ = 1 and β = 0 for every text: at the start the image path is the
    unmodulated mean of ReLU(W · tokens), and the text learns to modulate it (its weights get gradient from the
    first step). Image tokens outside `image.mask` are left out of the mean.

    Args:
        cfg: the modulation width and whether to append the text.
        image_dim: width of image.pooled (unused).
        image_token_dim: width of image.tokens.
        text_dim: width of text.pooled.
        text_token_dim: width of text.tokens (unused).
    """

    modalities: ClassVar[tuple[str, ...]] = ("image", "text")

    def __init__(
        self, cfg: FiLMConfig, *, image_dim: int, image_token_dim: int, text_dim: int, text_token_dim: int
    ) -> None:
        super().__init__()
        self.image_proj = nn.Linear(image_token_dim, cfg.dim)
        self.film = nn.Linear(text_dim, 2 * cfg.dim)
        nn.init.zeros_(self.film.weight)  # γ = 1, β = 0: FiLM starts as the identity
        nn.init.zeros_(self.film.bias)
        self.text_proj = projection(text_dim, cfg.dim) if cfg.with_text else None
        self.out_dim = 2 * cfg.dim if cfg.with_text else cfg.dim

    def forward(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        assert image is not None and text is not None, "film fusion needs both modalities"
        x = self.image_proj(image.tokens)  # (B, N, D)
        delta_gamma, beta = self.film(text.pooled).unsqueeze(1).chunk(2, dim=-1)  # (B, 1, D) each
        x = torch.relu((1 + delta_gamma) * x + beta)  # (B, N, D)
        pooled = masked_mean(x, image.mask)  # (B, D); zeros for rows without tokens
        if self.text_proj is None:
            return pooled  # (B, D)
        return torch.cat([pooled, self.text_proj(text.pooled)], dim=-1)  # (B, 2D)
