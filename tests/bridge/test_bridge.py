"""The bridge model: projector shapes, only trainable parts saved, and real training steps that lower the loss."""

from __future__ import annotations

import torch

from vlfuse.bridge.model import IGNORE, BridgeBatch


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


def train_steps(bridge, batch: BridgeBatch, *, steps: int, lr: float) -> list[float]:
    """Adam steps on the bridge's trainable parameters over one batch; the loss before each step."""
    opt = torch.optim.Adam([p for p in bridge.parameters() if p.requires_grad], lr=lr)
    bridge.train()
    losses = []
    for _ in range(steps):
        loss = bridge.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


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
    losses = train_steps(tiny_bridge, batch, steps=6, lr=3e-3)
    assert losses[-1] < 0.7 * losses[0], losses
    assert torch.equal(tiny_bridge.lm.model.layers[0].mlp.up_proj.weight, frozen_before)


def test_scratch_decoder_trains_whole_saves_whole_and_generates():
    """language_model: scratch-decoder — a small fresh decoder behind the same interface as the pretrained LM."""
    import pytest

    from vlfuse.bridge.generate import GenerationConfig, generate
    from vlfuse.bridge.language_model import ScratchDecoderConfig, load_language_model
    from vlfuse.bridge.model import BridgeModel, BridgeModelConfig
    from vlfuse.errors import ConfigError

    torch.manual_seed(0)
    size = ScratchDecoderConfig(hidden=32, layers=1, heads=2)
    lm, tokenizer = load_language_model("scratch-decoder", size)
    cfg = BridgeModelConfig.model_validate({"language_model": "scratch-decoder", "projector": {"kind": "linear"}})
    bridge = BridgeModel(cfg, lm, tokenizer, visual_dim=8)
    assert lm.config.hidden_size == 32 and lm.config.num_hidden_layers == 1
    assert any(k.startswith("decoder.") for k in bridge.state_dict())  # trained, so saved with the bridge
    batch = batch_for(bridge)
    losses = train_steps(bridge, batch, steps=30, lr=1e-2)
    assert losses[-1] < 0.1 * losses[0], losses  # from ln(49,152) ≈ 10.8
    bridge.eval()
    embeds = bridge.embed(batch.visual[:2], batch.text_ids[:2, :5])  # (2, T, H)
    mask = torch.ones(embeds.shape[:2], dtype=torch.long)  # (2, T)
    ids = generate(bridge.lm, embeds, mask, GenerationConfig(max_new_tokens=3), eos_id=bridge.eos_id)
    assert len(ids) == 2 and all(1 <= len(row) <= 3 for row in ids)
    with pytest.raises(ConfigError, match="lora.rank"):
        lm2, _ = load_language_model("scratch-decoder", size)
        BridgeModel(cfg.model_copy(update={"lora": cfg.lora.model_copy(update={"rank": 2})}), lm2, tokenizer, 8)
