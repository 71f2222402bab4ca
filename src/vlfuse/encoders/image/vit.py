"""A small Vision Transformer: patch embedding, learned positions, a CLS token and pre-norm encoder blocks."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from vlfuse.errors import ConfigError
from vlfuse.layers import encoder_layers
from vlfuse.registry import IMAGE_ENCODERS, ComponentConfig
from vlfuse.types import EncoderOutput


class ViTConfig(ComponentConfig):
    name: Literal["vit"] = "vit"
    patch_size: int = Field(8, ge=1)  # side of the square patches; must divide image_size
    dim: int = Field(128, ge=1)  # token width
    depth: int = Field(4, ge=1)  # transformer blocks
    heads: int = Field(4, ge=1)  # attention heads; must divide dim
    mlp_ratio: float = Field(2.0, gt=0)  # MLP hidden width = mlp_ratio · dim
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # inside the blocks
    pool: Literal["cls", "mean"] = "cls"  # pooled = the CLS token, or the mean of the patch tokens

    tiny: ClassVar[dict[str, Any]] = {"patch_size": 4, "dim": 16, "depth": 1, "heads": 2}

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> ViTConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        return self


@IMAGE_ENCODERS.register("vit", ViTConfig)
class ViTEncoder(nn.Module):
    """Patchify with a strided conv, prepend CLS, add learned positions, run pre-norm blocks, final LayerNorm.

    Args:
        cfg: patch size, width, depth and pooling.
        in_channels: image channels C.
        image_size: image height and width; a multiple of cfg.patch_size.
    """

    def __init__(self, cfg: ViTConfig, *, in_channels: int, image_size: int) -> None:
        super().__init__()
        if image_size % cfg.patch_size:
            raise ConfigError(
                f"model.image_encoder.patch_size: {cfg.patch_size} does not divide the image size {image_size}"
            )
        num_patches = (image_size // cfg.patch_size) ** 2
        self.patch = nn.Conv2d(in_channels, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos = nn.Parameter(torch.zeros(1, 1 + num_patches, cfg.dim))
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = encoder_layers(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.depth)
        self.norm = nn.LayerNorm(cfg.dim)
        self.pool = cfg.pool
        self.token_dim = self.out_dim = cfg.dim

    def forward(self, image: Tensor) -> EncoderOutput:
        x = self.patch(image)  # (B, D, H/p, W/p)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        cls = self.cls.expand(x.shape[0], -1, -1)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1) + self.pos  # (B, 1+N, D)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        tokens = x[:, 1:]  # (B, N, D)
        pooled = x[:, 0] if self.pool == "cls" else tokens.mean(dim=1)  # (B, D)
        return EncoderOutput(tokens=tokens, pooled=pooled)
