"""What an encoder wrapping a pretrained network (`self.net`) does when it is frozen."""

from __future__ import annotations

from torch import nn


class FreezableNet(nn.Module):
    """Base for encoders around a pretrained `self.net`: `freeze_net(True)` stops its gradients and keeps it in eval
    mode for good — no dropout, and BatchNorm keeps its pretrained statistics — even when the model trains."""

    net: nn.Module
    frozen: bool = False
    # the pretrained weights of `self.net` come from an installed package: frozen, a run need not store them
    weights_from_package: bool = True

    def freeze_net(self, frozen: bool) -> None:
        self.frozen = frozen
        if frozen:
            self.net.requires_grad_(False)
            self.net.eval()

    def train(self, mode: bool = True) -> FreezableNet:
        super().train(mode)
        if self.frozen:
            self.net.eval()
        return self
