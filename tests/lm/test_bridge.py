"""The bridge model: projector shapes, only trainable parts saved, and real training steps that lower the loss."""

from __future__ import annotations

import torch

from vlfuse.lm.bridge import IGNORE, BridgeBatch


def batch_for(bridge, n: int = 6) -> BridgeBatch:
    """Rows whose target (a colour word) is a function of the visual tokens, which are random 8-vectors."""
    g = torch.Generator().manual_seed(0)
    colours = ["red", "blue"]
    visual = torch.randn(n, 3, 8, generator=g)  # (B, N, D_v)
    which = (visual[:, 0, 0] > 0).long()
    prompt = bridge.encode_prompt("What color is the shape?")
    seqs = [(prompt, bridge.encode_target(colours[int(w)])) for w in which]
    length = max(len(p) + len(t) for p, t in seqs)
    ids = torch.full((n, length), bridge.pad_id)
    labels = torch.full((n, length), IGNORE)
    mask = torch.zeros(n, length, dtype=torch.bool)
    for b, (p, t) in enumerate(seqs):
        ids[b, : len(p) + len(t)] = torch.tensor(p + t)
        labels[b, len(p) : len(p) + len(t)] = torch.tensor(t)
        mask[b, : len(p) + len(t)] = True
    return BridgeBatch(visual, ids, mask, labels)


def test_projector_maps_visual_tokens_into_the_lm_width(tiny_bridge):
    visual = torch.randn(4, 5, 8)  # (B, N, D_v)
    assert tiny_bridge.projector(visual).shape == (4, 5, 576)
    text = torch.ones(4, 7, dtype=torch.long)
    prefix = len(tiny_bridge.user_prefix_ids)
    assert tiny_bridge.embed(visual, text).shape == (4, prefix + 5 + 7, 576)


def test_state_dict_holds_only_projector_and_adapters(tiny_bridge):
    keys = list(tiny_bridge.state_dict())
    assert keys and all(k.startswith(("projector.", "lora.")) for k in keys)
    assert any("lora_A" in k for k in keys) and any("lora_B" in k for k in keys)
    trainable = sum(p.numel() for p in tiny_bridge.parameters() if p.requires_grad)
    assert trainable == sum(v.numel() for v in tiny_bridge.state_dict().values())
    assert trainable < 1_000_000  # a few MB, while the LM has 134.5 M parameters


def test_training_steps_lower_the_loss_and_move_only_trainable_parts(tiny_bridge):
    batch = batch_for(tiny_bridge)
    frozen_before = tiny_bridge.lm.model.layers[0].mlp.up_proj.weight.clone()
    opt = torch.optim.Adam([p for p in tiny_bridge.parameters() if p.requires_grad], lr=3e-3)
    tiny_bridge.train()
    losses = []
    for _ in range(6):
        loss = tiny_bridge.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert torch.equal(tiny_bridge.lm.model.layers[0].mlp.up_proj.weight, frozen_before)
