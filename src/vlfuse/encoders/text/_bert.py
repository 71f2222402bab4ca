"""A BERT encoder (post-LayerNorm, absolute positions) in plain PyTorch that reads Hugging Face BERT checkpoints.

MiniLM is a 6-layer BERT. Loading it through `transformers` costs ~4.5 s of imports before the first token; this
module holds the same computation with the same parameter names, so the package's `model.safetensors` loads
directly (tests/encoders/test_bert.py checks the outputs against `transformers.BertModel` to 1e-5). Used by the
`minilm` text encoder; fine-tuning works as with any module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn


@dataclass(frozen=True)
class BertSettings:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def read(cls, file: Path) -> BertSettings:
        raw = json.loads(file.read_text())
        if raw.get("model_type") != "bert" or raw.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{file}: expected a BERT config with gelu activations")
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__})


class Embeddings(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(s.vocab_size, s.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(s.max_position_embeddings, s.hidden_size)
        self.token_type_embeddings = nn.Embedding(s.type_vocab_size, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)

    def forward(self, ids: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)  # (L,)
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)  # (B, L, H)


class SelfAttention(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.heads = s.num_attention_heads
        self.query = nn.Linear(s.hidden_size, s.hidden_size)
        self.key = nn.Linear(s.hidden_size, s.hidden_size)
        self.value = nn.Linear(s.hidden_size, s.hidden_size)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, length, width = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.view(b, length, self.heads, width // self.heads).transpose(1, 2)  # (B, h, L, d)

        out = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)),
                                             attn_mask=bias)  # (B, h, L, d)  # fmt: skip
        return out.transpose(1, 2).reshape(b, length, width)  # (B, L, H)


class DenseNorm(nn.Module):
    """dense → residual → LayerNorm (BERT's "output" blocks)."""

    def __init__(self, width_in: int, width: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.self = SelfAttention(s)  # the checkpoint's name: attention.self.query
        self.output = DenseNorm(s.hidden_size, s.hidden_size, s.layer_norm_eps)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        return self.output(self.self(x, bias), x)


class Intermediate(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.dense = nn.Linear(s.hidden_size, s.intermediate_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU, as BERT's "gelu"


class Layer(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.attention = Attention(s)
        self.intermediate = Intermediate(s)
        self.output = DenseNorm(s.intermediate_size, s.hidden_size, s.layer_norm_eps)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        x = self.attention(x, bias)
        return self.output(self.intermediate(x), x)


class Layers(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(s) for _ in range(s.num_hidden_layers))


class BertEncoder(nn.Module):
    """ids (B, L) + attention mask (B, L) → last hidden states (B, L, H); parameter names as in HF's BertModel."""

    def __init__(self, settings: BertSettings) -> None:
        super().__init__()
        self.settings = settings
        self.embeddings = Embeddings(settings)
        self.encoder = Layers(settings)

    @classmethod
    def from_folder(cls, folder: Path) -> BertEncoder:
        """config.json + model.safetensors of a Hugging Face BERT (the pooler, if any, is not used)."""
        model = cls(BertSettings.read(folder / "config.json"))
        state = {k: v for k, v in load_file(str(folder / "model.safetensors")).items()
                 if not k.startswith("pooler.") and k != "embeddings.position_ids"}  # fmt: skip
        model.load_state_dict(state)
        return model

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        x = self.embeddings(ids)  # (B, L, H)
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask.bool(), float("-inf"))
        bias = bias[:, None, None, :]  # (B, 1, 1, L): padded keys get no attention
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return x  # (B, L, H)
