"""The shuffled-frames baseline: the temporal transformer reading each clip's frames in a random order, redrawn for
every clip at training and at evaluation — the same capacity as `transformer`, with the order destroyed."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from vlfuse.encoders.temporal.transformer import TemporalTransformer, TemporalTransformerConfig
from vlfuse.registry import TEMPORAL_MODULES


class ShuffledConfig(TemporalTransformerConfig):
    name: Literal["shuffled"] = "shuffled"  # type: ignore[assignment]
    eval_seed: int = 0  # evaluation draws its orders from this seed, so scores repeat; training uses torch's RNG

    tiny: ClassVar[dict[str, Any]] = {"dim": 16, "depth": 1, "heads": 2}


@TEMPORAL_MODULES.register("shuffled", ShuffledConfig)
class ShuffledFrames(TemporalTransformer):
    order_aware: ClassVar[bool] = False  # its output depends on a random order, not on the clip's
    randomized: ClassVar[bool] = True  # so reversing the clip changes it too, by changing which order is drawn

    def __init__(self, cfg: ShuffledConfig, **sizes: int) -> None:
        super().__init__(cfg, **sizes)
        self.eval_seed = cfg.eval_seed

    def order(self, b: int, t: int, device: torch.device) -> Tensor:
        """(B, T) a random permutation of the frames per clip: torch's generator while training (checkpointed, so
        resume is exact), a fixed seed at evaluation (repeatable scores)."""
        generator = None if self.training else torch.Generator().manual_seed(self.eval_seed)
        keys = torch.rand(b, t, generator=generator)  # (B, T)
        return keys.argsort(dim=1).to(device)  # (B, T)
