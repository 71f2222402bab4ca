"""The plain-PyTorch BERT that runs MiniLM computes what transformers' BertModel computes from the same checkpoint."""

import pytest
import torch

from vlfuse.data.text import TextTokenizer
from vlfuse.encoders.text.minilm import MiniLMConfig, MiniLMEncoder, minilm_dir


def test_minilm_hidden_states_match_transformers_bert():
    transformers = pytest.importorskip("transformers")
    tokenizer = TextTokenizer.pretrained(MiniLMConfig.pretrained_tokenizer(), max_length=32)
    ours = MiniLMEncoder(MiniLMConfig(), vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, max_length=32)
    reference = transformers.BertModel.from_pretrained(minilm_dir(), add_pooling_layer=False).eval()
    ids, mask = tokenizer.encode([["a photo of a cat"], ["a much longer sentence about a red pickup truck, parked"]])
    with torch.no_grad():
        got = ours(ids, mask)
        expected = reference(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert got.tokens.shape == expected.shape == (2, ids.shape[1], 384)
    assert torch.allclose(got.tokens[mask], expected[mask], atol=1e-5)  # padded positions are never read
    pooled = (expected * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    assert torch.allclose(got.pooled, pooled, atol=1e-5)


def test_fine_tuning_minilm_gets_gradients():
    tokenizer = TextTokenizer.pretrained(MiniLMConfig.pretrained_tokenizer(), max_length=16)
    encoder = MiniLMEncoder(MiniLMConfig(frozen=False), vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id,
                            max_length=16)  # fmt: skip
    ids, mask = tokenizer.encode([["hello"], ["two words"]])
    encoder(ids, mask).pooled.sum().backward()
    grad = encoder.net.encoder.layer[0].attention.self.query.weight.grad
    assert grad is not None and grad.abs().sum() > 0
