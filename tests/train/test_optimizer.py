"""Weight decay reaches weight matrices only: biases, norm scales and embedding tables are not decayed."""

import torch
from torch import nn

from vlfuse.config import TrainConfig
from vlfuse.train.trainer import build_optimizer


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.linear = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.batch_norm = nn.BatchNorm1d(4)
        self.frozen = nn.Linear(4, 4).requires_grad_(False)


def step_with_zero_gradients(model: nn.Module, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = build_optimizer(model, cfg)
    for p in model.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    optimizer.step()
    return {k: (v.detach() - before[k]).abs().max() for k, v in model.named_parameters()}


def test_only_weight_matrices_decay():
    torch.manual_seed(0)
    model = Small()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    moved = step_with_zero_gradients(model, TrainConfig(lr=0.1, weight_decay=0.5, optimizer="adamw"))
    assert moved["linear.weight"] > 0  # decayed: w ← w − lr·wd·w
    decayed_not = ["linear.bias", "embed.weight", "norm.weight", "norm.bias", "batch_norm.weight", "batch_norm.bias",
                   "frozen.weight", "frozen.bias"]  # fmt: skip
    assert all(moved[k] == 0 for k in decayed_not), {k: float(moved[k]) for k in decayed_not}


def test_without_weight_decay_one_group_holds_every_trainable_parameter():
    model = Small()
    optimizer = build_optimizer(model, TrainConfig(weight_decay=0.0))
    assert len(optimizer.param_groups) == 1
    assert len(optimizer.param_groups[0]["params"]) == sum(p.requires_grad for p in model.parameters())
