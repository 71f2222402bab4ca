"""Temporal modules, parametrized over the registry: shapes, gradients, no NaN, and whether frame order matters —
reversing the frames changes every order-aware module's output and leaves the order-blind ones unchanged."""

from __future__ import annotations

import pytest
import torch

from vlfuse.encoders.video import VideoEncoder, tokens_per_frame, wrap_frame_encoder
from vlfuse.registry import IMAGE_ENCODERS, TEMPORAL_MODULES, Registry

B, T, N, D_TOK, D = 3, 5, 4, 6, 10  # T odd: the middle frame stays in place when the clip is reversed


def tiny(registry: Registry, name: str, **overrides):
    raw = {"name": name, **getattr(registry.config_class(name), "tiny", {}), **overrides}
    return registry.parse(raw, "test")


def build(name: str, **overrides):
    torch.manual_seed(0)
    return TEMPORAL_MODULES.build(tiny(TEMPORAL_MODULES, name, **overrides), token_dim=D_TOK, pooled_dim=D, frames=T,
                                  tokens_per_frame=N)  # fmt: skip


def frames(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, N, D_TOK, generator=gen), torch.randn(B, T, D, generator=gen)  # (B, T, N, D), (B, T, D)


@pytest.mark.parametrize("name", TEMPORAL_MODULES.names())
def test_registry_key_is_file_stem(name):
    assert TEMPORAL_MODULES.component_class(name).__module__ == f"vlfuse.encoders.temporal.{name}"
    assert TEMPORAL_MODULES.config_class(name)().name == name


@pytest.mark.parametrize("name", TEMPORAL_MODULES.names())
def test_shapes_finite_and_gradients(name):
    module = build(name).train()
    tokens, pooled = frames()
    tokens.requires_grad_(True)
    out = module(tokens, pooled)
    assert out.pooled.shape == (B, module.out_dim)
    assert out.tokens.ndim == 3 and out.tokens.shape[0] == B and out.tokens.shape[2] == module.token_dim
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    (out.pooled.square().mean() + out.tokens.square().mean()).backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0, "the frames' features must receive gradient"
    for pname, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("summary", ["flatten", "pooled"])
@pytest.mark.parametrize("name", TEMPORAL_MODULES.names())
def test_reversing_the_frames_changes_exactly_the_order_aware_modules(name, summary):
    overrides = {"summary": summary} if "summary" in TEMPORAL_MODULES.config_class(name).model_fields else {}
    module = build(name, **overrides).eval()
    tokens, pooled = frames()
    with torch.no_grad():
        forward = module(tokens, pooled).pooled
        backward = module(tokens.flip(1), pooled.flip(1)).pooled
    changed = (forward - backward).abs().max().item()
    if module.order_aware:
        assert changed > 1e-3, f"{name} ignores the order of the frames"
    elif not getattr(module, "randomized", False):  # the shuffled baseline: see the next tests
        assert changed < 1e-5, f"{name} is declared order-blind but reversing changed its output by {changed}"


def test_the_diagnostic_baselines_and_the_order_aware_set():
    aware = {n for n in TEMPORAL_MODULES.names() if TEMPORAL_MODULES.component_class(n).order_aware}
    assert {"transformer", "space_time", "gru"} <= aware
    assert not aware & {"mean", "middle_frame", "shuffled"}


def test_mean_pooling_ignores_any_permutation_and_shuffled_redraws_orders_while_training():
    tokens, pooled = frames()
    perm = torch.tensor([3, 0, 4, 1, 2])
    mean = build("mean").eval()
    with torch.no_grad():
        assert torch.allclose(mean(tokens, pooled).pooled, mean(tokens[:, perm], pooled[:, perm]).pooled, atol=1e-6)
    shuffled = build("shuffled")
    with torch.no_grad():
        evals = [shuffled.eval()(tokens, pooled).pooled for _ in range(2)]
        trains = [shuffled.train()(tokens, pooled).pooled for _ in range(2)]
    assert torch.equal(evals[0], evals[1]), "evaluation orders come from a fixed seed: repeatable scores"
    assert not torch.equal(trains[0], trains[1]), "training redraws the order every batch"


def test_too_many_frames_is_a_clear_error():
    module = build("transformer")
    tokens, pooled = torch.randn(1, T + 1, N, D_TOK), torch.randn(1, T + 1, D)
    with pytest.raises(ValueError, match="at most 5"):
        module(tokens, pooled)


@pytest.mark.parametrize("image_encoder", ["cnn", "vit", "seed_cnn"])
def test_video_encoder_runs_every_frame_through_the_image_tower(image_encoder):
    torch.manual_seed(0)
    frame_encoder = IMAGE_ENCODERS.build(tiny(IMAGE_ENCODERS, image_encoder), in_channels=3, image_size=16)
    n = tokens_per_frame(frame_encoder, in_channels=3, image_size=16)
    video = wrap_frame_encoder(frame_encoder, tiny(TEMPORAL_MODULES, "transformer"), in_channels=3, image_size=16,
                               frames=4)  # fmt: skip
    assert isinstance(video, VideoEncoder)
    clip = torch.randn(2, 4, 3, 16, 16)  # (B, T, C, H, W)
    out = video.eval()(clip)
    assert out.pooled.shape == (2, video.out_dim) and out.tokens.shape == (2, 4, video.token_dim)
    with torch.no_grad():  # the per-frame features are the image encoder's on each frame
        single = frame_encoder(clip[1])  # (T, N, D)
        assert single.tokens.shape[1] == n
        ref = video.temporal(single.tokens[None], single.pooled[None]).pooled  # (1, D')
    assert torch.allclose(out.pooled[1:], ref, atol=1e-5)


@pytest.mark.parametrize("name", ["transformer", "space_time", "gru"])
def test_order_aware_modules_learn_which_frame_came_first_from_layernorm_scale_features(name):
    """Which of two 'colours' is shown first (frames 0–3) and which last (frames 5–8): an order-aware module must
    learn it within 150 steps from features at the scale of real ones (LayerNorm'd, norm ≈ √D)."""
    torch.manual_seed(0)
    d, frames = 32, 9
    module = TEMPORAL_MODULES.build(tiny(TEMPORAL_MODULES, name, dim=32), token_dim=d, pooled_dim=d, frames=frames,
                                    tokens_per_frame=1)  # fmt: skip
    colours = torch.nn.functional.layer_norm(torch.randn(8, d), (d,))  # (8, D) unit-variance features
    head = torch.nn.Linear(module.out_dim, 16)  # 8 "first" + 8 "last" answers
    opt = torch.optim.Adam([*module.parameters(), *head.parameters()], lr=3e-3)

    def batch(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.randint(0, 8, (n,))
        b = (a + torch.randint(1, 8, (n,))) % 8
        x = torch.zeros(n, frames, d)  # (B, T, D): an empty middle frame
        x[:, :4], x[:, 5:] = colours[a][:, None], colours[b][:, None]
        return x, torch.stack([a, 8 + b], 1)  # the first colour and the last one

    for _ in range(150):
        x, y = batch()
        logits = head(module(x[:, :, None], x).pooled)  # (B, 16)
        loss = torch.nn.functional.cross_entropy(logits[:, :8], y[:, 0]) + torch.nn.functional.cross_entropy(
            logits[:, 8:], y[:, 1] - 8)  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = batch(512)
    with torch.no_grad():
        logits = head(module.eval()(x[:, :, None], x).pooled)
    accuracy = ((logits[:, :8].argmax(1) == y[:, 0]).float().mean() + (logits[:, 8:].argmax(1) == y[:, 1] - 8).float()
                .mean()) / 2  # fmt: skip
    assert accuracy > 0.95, f"{name}: {accuracy:.3f}"
