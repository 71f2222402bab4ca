"""The classic Keras-example image encoder: one 3×3 conv with 32 filters, ReLU, 2×2 max-pool, flatten.

Kept exactly as the reference so results can be compared with the many tutorials built on it. On the CPU the
conv → ReLU → pool runs as one compiled kernel with the same maths (`vlfuse.kernels.conv_pool`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from torch import Tensor, nn

from vlfuse.errors import ConfigError
from vlfuse.kernels.conv_pool import conv_relu_pool
from vlfuse.registry import IMAGE_ENCODERS, ComponentConfig
from vlfuse.types import EncoderOutput


class SeedCNNConfig(ComponentConfig):
    """The architecture is fixed (Conv2d(C, 32, 3) → ReLU → MaxPool 2×2 → Flatten); `fused: false` runs it as
    PyTorch's three operators instead of the fused CPU kernel (same maths, for comparison)."""

    name: Literal["seed_cnn"] = "seed_cnn"
    fused: bool = True

    tiny: ClassVar[dict[str, Any]] = {}  # overrides for a fast test-sized variant


@IMAGE_ENCODERS.register("seed_cnn", SeedCNNConfig)
class SeedCNNEncoder(nn.Module):
    """Conv2d(C, 32, 3, no padding) → ReLU → MaxPool 2×2 → Flatten.

    pooled is the flattened map, (B, 32·h·w) with h = w = (image_size - 2) // 2 (28 px → 13·13·32 = 5408);
    tokens are the map's cells, (B, h·w, 32).

    Args:
        cfg: the (empty) config.
        in_channels: image channels C.
        image_size: image height and width.
    """

    filters = 32

    def __init__(self, cfg: SeedCNNConfig, *, in_channels: int, image_size: int) -> None:
        super().__init__()
        side = (image_size - 2) // 2  # valid 3×3 conv, then floor-halving max-pool
        if side < 1:
            raise ConfigError(f"model.image_encoder: 'seed_cnn' needs images of at least 4 px, got {image_size}")
        self.conv = nn.Conv2d(in_channels, self.filters, kernel_size=3)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        # the pooled map as a module of its own, so hooks (Grad-CAM's layer, vlfuse.explain) see it on both paths:
        # the fused kernel computes conv → ReLU → pool without calling those modules
        self.feature_map = nn.Identity()
        self.fused = cfg.fused
        self.token_dim = self.filters
        self.out_dim = self.filters * side * side

    def forward(self, image: Tensor) -> EncoderOutput:
        if self.fused:
            x = conv_relu_pool(image, self.conv)  # (B, 32, h, w), the same as the line below
        else:
            x = self.pool(self.relu(self.conv(image)))  # (B, 32, h, w)
        x = self.feature_map(x)  # (B, 32, h, w)
        tokens = x.flatten(2).transpose(1, 2)  # (B, h*w, 32)
        pooled = self.flatten(x)  # (B, 32*h*w)
        return EncoderOutput(tokens=tokens, pooled=pooled)
