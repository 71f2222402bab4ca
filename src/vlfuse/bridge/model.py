"""The bridge model: visual tokens → projector → the language model's embedding space, placed before the prompt.

    <|im_start|>user\\n [v_1 … v_N] \\n {prompt}<|im_end|>\\n<|im_start|>assistant\\n {target}<|im_end|>

The visual tokens come from a frozen image encoder (features are cached on disk, `vlfuse.features`); the projector
(linear or MLP) maps each one to the LM's hidden width; the LM (SmolLM2-135M-Instruct) stays frozen, optionally with
LoRA adapters (peft) on its attention projections. Only the projector and the adapters are trained and saved, so a
bridge checkpoint is a few MB while the LM weights stay in their package.

The pretrained LM is deliberately not a registered submodule: `state_dict()`, `parameters()` and the optimizer see
only the trainable parts (the LoRA parameters are registered under `lora` as well as living inside the LM). A
from-scratch decoder (`language_model: scratch-decoder`) is trained whole, so it is registered as `decoder`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from vlfuse.bridge.language_model import ScratchDecoderConfig
from vlfuse.config import Section
from vlfuse.errors import ConfigError

USER_PREFIX = "<|im_start|>user\n"
ASSISTANT_PREFIX = "<|im_end|>\n<|im_start|>assistant\n"
END_OF_TURN = "<|im_end|>"
IGNORE = -100  # label id that the loss skips


class ProjectorConfig(Section):
    kind: Literal["linear", "mlp"] = "mlp"  # mlp: Linear → GELU → Linear (LLaVA-1.5 style)
    hidden: int | None = Field(None, ge=1)  # MLP width (None: the LM's hidden width)
    # average-pool a square grid of visual tokens (e.g. 4 × 4) down to grid × grid first: fewer LM positions per
    # sample (the LM's cost grows with them); None keeps every token
    grid: int | None = Field(None, ge=1)


class LoraConfig(Section):
    rank: int = Field(0, ge=0)  # 0: no adapters, the LM is fully frozen
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])  # LM modules that get adapters


class BridgeModelConfig(Section):
    language_model: str = "smollm2-135m-instruct"  # or "scratch-decoder": a small decoder trained from scratch
    scratch: ScratchDecoderConfig = Field(default_factory=ScratchDecoderConfig)  # its size (scratch-decoder only)
    projector: ProjectorConfig = Field(default_factory=ProjectorConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)


@dataclass
class BridgeBatch:
    """A batch for the bridge.

    Attributes:
        visual: (B, N, D_v) visual tokens (cached encoder features of each row's image).
        text_ids: (B, L) long: prompt tokens, then target tokens; right-padded.
        text_mask: (B, L) bool, True for real tokens.
        labels: (B, L) long: the target token ids where the loss applies, IGNORE elsewhere.
    """

    visual: Tensor
    text_ids: Tensor
    text_mask: Tensor
    labels: Tensor

    def to(self, device: torch.device | str) -> BridgeBatch:
        return BridgeBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.visual.shape[0]


class Projector(nn.Module):
    """Maps visual tokens (B, N, D_v) to the LM's embedding width (B, N, H)."""

    def __init__(self, cfg: ProjectorConfig, visual_dim: int, lm_dim: int) -> None:
        super().__init__()
        self.grid = cfg.grid
        self.norm = nn.LayerNorm(visual_dim)  # cached features of a frozen tower have arbitrary scale
        if cfg.kind == "linear":
            self.net: nn.Module = nn.Linear(visual_dim, lm_dim)
        else:
            hidden = cfg.hidden or lm_dim
            self.net = nn.Sequential(nn.Linear(visual_dim, hidden), nn.GELU(), nn.Linear(hidden, lm_dim))

    def forward(self, visual: Tensor) -> Tensor:
        if self.grid is not None:
            visual = pool_grid(visual, self.grid)  # (B, grid², D_v)
        return self.net(self.norm(visual))  # (B, N, H)


def pool_grid(tokens: Tensor, grid: int) -> Tensor:
    """Average-pool row-major square-grid tokens (B, S·S, D) to (B, grid·grid, D); fewer tokens pass unchanged."""
    b, n, d = tokens.shape
    side = round(n**0.5)
    if side * side != n:
        raise ValueError(f"projector.grid needs a square grid of visual tokens, got {n}")
    if side <= grid:
        return tokens
    maps = tokens.transpose(1, 2).reshape(b, d, side, side)  # (B, D, S, S)
    return F.adaptive_avg_pool2d(maps, grid).flatten(2).transpose(1, 2)  # (B, grid², D)


class BridgeModel(nn.Module):
    """Projector (+ LoRA adapters) around a frozen causal LM; see the module docstring.

    Args:
        cfg: projector and LoRA settings.
        lm: a transformers causal LM (frozen by the caller, e.g. `load_language_model`).
        tokenizer: its tokenizer.
        visual_dim: width D_v of the visual tokens.
    """

    def __init__(self, cfg: BridgeModelConfig, lm: nn.Module, tokenizer, visual_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        hidden = lm.config.hidden_size
        self.projector = Projector(cfg.projector, visual_dim, hidden)
        self.trains_lm = any(p.requires_grad for p in lm.parameters())  # a from-scratch decoder
        if self.trains_lm and cfg.lora.rank:
            raise ConfigError("bridge.lora: a from-scratch decoder is trained whole; set lora.rank: 0")
        self.lora = nn.ParameterDict()
        if cfg.lora.rank:
            for name, param in add_lora(lm, cfg.lora):
                self.lora[name.replace(".", "__")] = param
        if self.trains_lm:
            self.decoder = lm  # registered: trained and saved whole
        object.__setattr__(self, "lm", lm)  # (pretrained) not a submodule: frozen weights stay out of state_dict()
        self.eos_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self.user_prefix_ids = tokenizer(USER_PREFIX, add_special_tokens=False).input_ids

    def train(self, mode: bool = True) -> BridgeModel:
        super().train(mode)
        if not self.trains_lm:
            self.lm.train(mode and bool(self.cfg.lora.rank and self.cfg.lora.dropout))  # only adapters have dropout
        return self

    # ---------------------------------------------------------------- tokens
    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids that follow the visual tokens: the prompt and the assistant header."""
        return self.tokenizer("\n" + prompt.strip() + ASSISTANT_PREFIX, add_special_tokens=False).input_ids

    def encode_target(self, target: str) -> list[int]:
        """Token ids of an answer or caption, closed by the end-of-turn token."""
        return self.tokenizer(target.strip() + END_OF_TURN, add_special_tokens=False).input_ids

    def embed(self, visual: Tensor, text_ids: Tensor) -> Tensor:
        """[user prefix, projected visual tokens, text] embeddings.

        Args:
            visual: (B, N, D_v).
            text_ids: (B, L).

        Returns:
            (B, P + N + L, H) with P the user-prefix length.
        """
        table = self.lm.get_input_embeddings()
        prefix = torch.tensor(self.user_prefix_ids, device=text_ids.device)  # (P,)
        prefix = table(prefix).unsqueeze(0).expand(len(visual), -1, -1)  # (B, P, H)
        return torch.cat([prefix, self.projector(visual), table(text_ids)], dim=1)  # (B, P + N + L, H)

    def loss(self, batch: BridgeBatch) -> Tensor:
        """Next-token cross-entropy on the target tokens only (the prompt and padding are not predicted)."""
        embeds = self.embed(batch.visual, batch.text_ids)  # (B, T, H), T = P + N + L
        start = embeds.shape[1] - batch.text_ids.shape[1]  # position of the first text token
        keep = torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)  # (B, T)
        keep[:, start:] = batch.text_mask
        hidden = self.lm.model(inputs_embeds=embeds, attention_mask=keep.long()).last_hidden_state  # (B, T, H)
        predicting = hidden[:, start - 1 : -1]  # (B, L, H): position t predicts text token t
        targets = batch.labels != IGNORE  # (B, L)
        logits = self.lm.lm_head(predicting[targets])  # (M, V), only where a target token is predicted
        return F.cross_entropy(logits, batch.labels[targets])


def add_lora(lm: nn.Module, cfg: LoraConfig) -> list[tuple[str, nn.Parameter]]:
    """Inject LoRA adapters (peft) into the LM's `cfg.targets` modules; returns the new trainable parameters."""
    from vlfuse.pretrained import pip_command, require_module

    require_module("peft", pip_command("peft"), "LoRA adapters (bridge.lora.rank > 0)")
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    peft_cfg = PeftLoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=cfg.targets, bias="none"
    )
    inject_adapter_in_model(peft_cfg, lm)
    params = []
    for name, param in lm.named_parameters():
        is_lora = "lora_" in name
        param.requires_grad_(is_lora)
        if is_lora:
            params.append((name, param))
    return params
