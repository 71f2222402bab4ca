"""build_model / MultimodalModel over the whole registries, config validation, and a tiny learning test."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlfuse.config import ModelConfig
from vlfuse.data.text import TextTokenizer
from vlfuse.errors import ConfigError
from vlfuse.model import MultimodalModel, build_model, count_parameters
from vlfuse.registry import FUSIONS, IMAGE_ENCODERS, TEXT_ENCODERS, Registry
from vlfuse.types import Batch

SIZES = {"in_channels": 3, "image_size": 16, "vocab_size": 20, "pad_id": 0, "max_length": 6}


def tiny(registry: Registry, name: str, **overrides) -> dict:
    """The component's raw config with its test-sized overrides (`tiny` on the config class) applied."""
    return {"name": name, **getattr(registry.config_class(name), "tiny", {}), **overrides}


def model_config(image: str | None, text: str | None, fusion: str, head: dict | None = None) -> ModelConfig:
    return ModelConfig(
        image_encoder=tiny(IMAGE_ENCODERS, image) if image else None,
        text_encoder=tiny(TEXT_ENCODERS, text) if text else None,
        fusion=tiny(FUSIONS, fusion),
        head=head or {"name": "mlp", "hidden": [8]},
    )


def random_batch(batch_size: int = 4) -> Batch:
    """Text rows have 6, 3, 1 and 0 real tokens (right padding)."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([6, 3, 1, 0, 2, 5, 4, 6])[:batch_size]
    mask = torch.arange(6) < lengths.unsqueeze(1)  # (B, L)
    ids = torch.randint(1, 20, (batch_size, 6), generator=g).masked_fill(~mask, 0)
    return Batch(image=torch.randn(batch_size, 3, 16, 16, generator=g), text_ids=ids, text_mask=mask)


PRETRAINED = {"efficientnet_lite0", "minilm"}  # slow to build: combined with every fusion only through concat


def combos() -> list[tuple[str, str, str]]:
    """Every fusion with every image encoder (one text encoder) and every text encoder (one image encoder)."""
    out = {(i, "bow", f) for f in FUSIONS.names() for i in IMAGE_ENCODERS.names()}
    out |= {("cnn", t, f) for f in FUSIONS.names() for t in TEXT_ENCODERS.names()}
    return sorted(c for c in out if c[2] == "concat" or not PRETRAINED & set(c))


def sizes_for(text: str | None) -> dict:
    """SIZES, with a pretrained text encoder's own vocabulary size (the random ids 1..19 exist in it too)."""
    cls = TEXT_ENCODERS.config_class(text) if text else None
    if cls is not None and hasattr(cls, "pretrained_tokenizer"):
        return {**SIZES, "vocab_size": TextTokenizer.pretrained(cls.pretrained_tokenizer(), max_length=6).vocab_size}
    return SIZES


@pytest.mark.parametrize(("image", "text", "fusion"), combos())
def test_forward_backward_reaches_the_encoders_the_fusion_uses(image, text, fusion):
    torch.manual_seed(0)
    model = build_model(model_config(image, text, fusion), num_outputs=3, **sizes_for(text))
    needs = FUSIONS.component_class(fusion).modalities
    assert (model.image_encoder is not None) == ("image" in needs)
    assert (model.text_encoder is not None) == ("text" in needs)
    logits = model(random_batch())
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    for encoder in (model.image_encoder, model.text_encoder):
        if encoder is not None:
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


@pytest.mark.parametrize("missing", ["image", "text"])
@pytest.mark.parametrize("fusion", ["concat", "product", "attention"])
def test_fusion_needing_a_missing_modality_is_a_config_error(fusion, missing):
    cfg = model_config(None if missing == "image" else "cnn", None if missing == "text" else "bow", fusion)
    with pytest.raises(ConfigError, match=rf"model\.fusion.*{fusion}.*model\.{missing}_encoder is not set"):
        build_model(cfg, num_outputs=2, **SIZES)


def test_encoder_for_absent_data_is_a_config_error():
    cfg = model_config("cnn", "bow", "concat")
    with pytest.raises(ConfigError, match="model.text_encoder"):
        build_model(cfg, num_outputs=2, **{**SIZES, "vocab_size": 0})
    with pytest.raises(ConfigError, match="model.image_encoder"):
        build_model(cfg, num_outputs=2, **{**SIZES, "in_channels": None, "image_size": None})


def test_unimodal_models_need_only_their_data():
    text_model = build_model(model_config(None, "gru", "text_only"), num_outputs=1, **{**SIZES, "image_size": 0})
    batch = random_batch()
    assert text_model(Batch(image=None, text_ids=batch.text_ids, text_mask=batch.text_mask)).shape == (4, 1)
    image_model = build_model(model_config("cnn", "gru", "image_only"), num_outputs=2, **{**SIZES, "vocab_size": 0})
    assert image_model.text_encoder is None
    assert image_model(Batch(image=batch.image, text_ids=None, text_mask=None)).shape == (4, 2)


def test_default_head_and_count_parameters():
    model = build_model(
        ModelConfig(image_encoder="seed_cnn", text_encoder="seed_lstm", fusion="concat"),
        num_outputs=13,
        **{**SIZES, "image_size": 28},
    )
    assert isinstance(model, MultimodalModel)
    assert model.fusion.out_dim == 5408 + 64 and model.head.net[0].in_features == 5408 + 64
    total = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == total
    model.image_encoder.requires_grad_(False)
    assert count_parameters(model) == total - (32 * 3 * 9 + 32)
    assert count_parameters(model, trainable_only=False) == total


def test_rows_sharing_images_match_one_image_per_row():
    model = build_model(model_config("cnn", "gru", "attention"), num_outputs=3, **SIZES).eval()
    batch = random_batch(6)
    image_index = torch.tensor([0, 2, 2, 1, 0, 2])
    shared = Batch(batch.image[:3], batch.text_ids, batch.text_mask, image_index=image_index)
    per_row = Batch(batch.image[:3][image_index], batch.text_ids, batch.text_mask)
    with torch.no_grad():
        torch.testing.assert_close(model(shared), model(per_row))


def xor_data(n: int, g: torch.Generator) -> Batch:
    """Label = (blob polarity in the image) XOR (key token 2 rather than 1 somewhere in the text)."""
    polarity = torch.randint(0, 2, (n,), generator=g)
    key = torch.randint(0, 2, (n,), generator=g)
    image = 0.3 * torch.randn(n, 1, 12, 12, generator=g)
    rows, cols = torch.randint(0, 8, (2, n), generator=g)
    for i in range(n):
        image[i, 0, rows[i] : rows[i] + 4, cols[i] : cols[i] + 4] += 1.0 if polarity[i] else -1.0
    lengths = torch.randint(2, 7, (n,), generator=g)
    mask = torch.arange(6) < lengths.unsqueeze(1)  # (n, 6)
    ids = torch.randint(3, 12, (n, 6), generator=g)
    where = (torch.rand(n, generator=g) * lengths).long()
    ids[torch.arange(n), where] = 1 + key
    return Batch(image=image, text_ids=ids.masked_fill(~mask, 0), text_mask=mask, label=polarity ^ key)


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread, and far faster when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_only_fusions_that_see_both_modalities_learn_xor():
    g = torch.Generator().manual_seed(0)
    train, test = xor_data(2048, g), xor_data(512, g)
    sizes = {"in_channels": 1, "image_size": 12, "vocab_size": 12, "pad_id": 0, "max_length": 6}
    accuracy = {}
    for fusion in ["concat", "product", "attention", "image_only", "text_only"]:
        torch.manual_seed(0)
        cfg = ModelConfig(
            image_encoder={"name": "cnn", "channels": [8, 16]},
            text_encoder={"name": "bow", "embed_dim": 16},
            fusion={"name": fusion, **({"dim": 16, "heads": 2} if fusion == "attention" else {})},
            head={"name": "mlp", "hidden": [32], "dropout": 0.0},
        )
        model = build_model(cfg, num_outputs=2, **sizes)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(150):
            idx = torch.randint(0, 2048, (64,), generator=g)
            batch = Batch(train.image[idx], train.text_ids[idx], train.text_mask[idx])
            loss = nn.functional.cross_entropy(model(batch), train.label[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            accuracy[fusion] = (model.eval()(test).argmax(-1) == test.label).float().mean().item()
    for fusion in ["concat", "product", "attention"]:
        assert accuracy[fusion] > 0.9, accuracy
    for fusion in ["image_only", "text_only"]:
        assert accuracy[fusion] < 0.65, accuracy
