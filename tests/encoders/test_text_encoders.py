"""Text encoders: every registered one (tiny variant), padding handling, and the exact seed_lstm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlfuse.data.text import TextTokenizer
from vlfuse.registry import TEXT_ENCODERS, Registry

VOCAB, PAD, MAX_LEN = 20, 0, 8


def tiny(registry: Registry, name: str, **overrides):
    """The component's config with its test-sized overrides (`tiny` on the config class) applied."""
    raw = {"name": name, **getattr(registry.config_class(name), "tiny", {}), **overrides}
    return registry.parse(raw, "test")


def vocab_for(cfg) -> int:
    """VOCAB, or a pretrained encoder's own vocabulary size (ids 1..19 exist in it too)."""
    if hasattr(cfg, "pretrained_tokenizer"):
        return TextTokenizer.pretrained(cfg.pretrained_tokenizer(), max_length=MAX_LEN).vocab_size
    return VOCAB


def build(name: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    cfg = tiny(TEXT_ENCODERS, name, **overrides)
    return TEXT_ENCODERS.build(cfg, vocab_size=vocab_for(cfg), pad_id=PAD, max_length=MAX_LEN)


def padded_batch(lengths: list[int], length: int = MAX_LEN) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random ids (never the pad id at real positions) and their mask."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (len(lengths), length), generator=g)
    mask = torch.arange(length) < torch.tensor(lengths).unsqueeze(1)  # (B, L)
    return ids.masked_fill(~mask, PAD), mask


@pytest.mark.parametrize("name", TEXT_ENCODERS.names())
def test_registry_key_is_file_stem_and_config_name(name):
    assert TEXT_ENCODERS.component_class(name).__module__ == f"vlfuse.encoders.text.{name}"
    assert TEXT_ENCODERS.config_class(name)().name == name


@pytest.mark.parametrize("name", TEXT_ENCODERS.names())
def test_shapes_finite_and_gradients_with_padding(name):
    enc = build(name)
    ids, mask = padded_batch([8, 3, 1, 0])  # full, padded, one token, all padding
    out = enc(ids, mask)
    assert out.pooled.shape == (4, enc.out_dim)
    assert out.tokens.shape == (4, MAX_LEN, enc.token_dim)
    assert out.mask is not None and torch.equal(out.mask, mask)
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    (out.pooled.square().mean() + (out.tokens * mask.unsqueeze(-1)).square().mean()).backward()
    grads = {n: p.grad for n, p in enc.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert enc.embed.weight.grad.abs().sum() > 0
    assert enc.embed.weight.grad[PAD].abs().sum() == 0, "the pad embedding must stay fixed"


@pytest.mark.parametrize("name", TEXT_ENCODERS.names())
def test_padding_does_not_change_the_result(name):
    enc = build(name).eval()
    ids, mask = padded_batch([5, 2])
    with torch.no_grad():
        padded = enc(ids, mask)
        short = enc(ids[:, :5], mask[:, :5])
        row = enc(ids[1:, :2], None)  # the second row alone, unpadded, no mask
    torch.testing.assert_close(padded.pooled, short.pooled)
    torch.testing.assert_close(padded.pooled[1:], row.pooled)
    torch.testing.assert_close(padded.tokens[1:, :2], row.tokens)


@pytest.mark.parametrize("name", ["seed_lstm", "gru", "transformer"])
def test_all_padding_rows_pool_to_zero(name):
    enc = build(name)
    ids, mask = padded_batch([3, 0])
    assert torch.equal(enc(ids, mask).pooled[1], torch.zeros(enc.out_dim))


def test_seed_lstm_is_exactly_the_keras_example():
    enc = build("seed_lstm")
    assert enc.embed.num_embeddings == VOCAB and enc.embed.embedding_dim == 32 and enc.embed.padding_idx == PAD
    assert (enc.lstm.input_size, enc.lstm.hidden_size, enc.lstm.num_layers) == (32, 64, 1)
    assert not enc.lstm.bidirectional and enc.out_dim == enc.token_dim == 64
    assert [type(m) for m in enc.children()] == [nn.Embedding, nn.LSTM]


def test_seed_lstm_pooled_is_the_state_at_the_last_real_token():
    enc = build("seed_lstm")
    lengths = [8, 5, 1]
    ids, mask = padded_batch(lengths)
    out = enc(ids, mask)
    for i, n in enumerate(lengths):
        seq_out, (h, _) = enc.lstm(enc.embed(ids[i : i + 1, :n]))  # the unpadded row alone
        torch.testing.assert_close(out.pooled[i], h[-1, 0])
        torch.testing.assert_close(out.pooled[i], seq_out[0, -1])
        torch.testing.assert_close(out.tokens[i, :n], seq_out[0])
        assert torch.equal(out.tokens[i, n:], torch.zeros_like(out.tokens[i, n:]))


def test_gru_bidirectional_pooled_concatenates_both_directions():
    enc = build("gru", layers=2, bidirectional=True)
    ids, mask = padded_batch([6, 2])
    out = enc(ids, mask)
    assert enc.out_dim == 2 * enc.gru.hidden_size
    _, h = enc.gru(enc.embed(ids[1:, :2]))  # (layers*2, 1, hidden)
    torch.testing.assert_close(out.pooled[1], torch.cat([h[-2, 0], h[-1, 0]]))


def test_bow_pooling_is_the_masked_mean_and_max():
    enc = build("bow", hidden=[])
    ids, mask = padded_batch([3, 0])
    out = enc(ids, mask)
    emb = enc.embed(ids[0, :3])  # (3, E)
    torch.testing.assert_close(out.pooled[0], torch.cat([emb.mean(0), emb.amax(0)]))
    assert torch.equal(out.pooled[1], torch.zeros(enc.out_dim))


def test_minilm_reads_its_own_tokenizer_and_embeds_paraphrases_closer(tmp_path):
    cfg = TEXT_ENCODERS.parse("minilm", "test")
    tokenizer = TextTokenizer.pretrained(cfg.pretrained_tokenizer(), max_length=16)
    ids, mask = tokenizer.encode(["a red circle", "a circle that is red", "an ankle boot"])
    assert ids[0, 0] == tokenizer._tok.token_to_id("[CLS]") and tokenizer.pad_id == 0
    assert tokenizer.tokenize("Ankle Boot") == ["ankle", "boot"]  # MiniLM's WordPiece lower-cases itself
    enc = TEXT_ENCODERS.build(cfg, vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, max_length=16)
    assert not any(p.requires_grad for p in enc.parameters())  # frozen by default
    with torch.no_grad():
        pooled = torch.nn.functional.normalize(enc.train()(ids, mask).pooled, dim=-1)  # frozen: no dropout either
    similar, different = pooled[0] @ pooled[1], pooled[0] @ pooled[2]
    assert similar > different + 0.2, (similar, different)
    tokenizer.save(tmp_path / "tok.json")
    assert torch.equal(TextTokenizer.load(tmp_path / "tok.json").encode(["a red circle"])[0], ids[:1])
    with pytest.raises(Exception, match="vocabulary"):
        TEXT_ENCODERS.build(cfg, vocab_size=100, pad_id=0, max_length=16)


def test_transformer_rejects_text_longer_than_max_length():
    enc = build("transformer")
    with pytest.raises(ValueError, match="max_length"):
        enc(torch.ones(1, MAX_LEN + 1, dtype=torch.long), None)


@pytest.mark.parametrize("name", TEXT_ENCODERS.names())
def test_default_config_builds(name):
    cfg = TEXT_ENCODERS.parse(name, "test")
    enc = TEXT_ENCODERS.build(cfg, vocab_size=vocab_for(cfg), pad_id=PAD, max_length=MAX_LEN)
    ids, mask = padded_batch([8, 2])
    with torch.no_grad():
        out = enc.eval()(ids, mask)
    assert out.pooled.shape == (2, enc.out_dim) and out.tokens.shape == (2, MAX_LEN, enc.token_dim)
