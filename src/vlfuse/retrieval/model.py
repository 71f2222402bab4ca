"""The dual encoder: an image tower and a text tower from the registries, projected into one normalised space.

Either tower can be frozen (LiT: a pretrained image tower kept fixed while the text tower and both projections
learn). A frozen tower has no trainable parameters, stays in eval mode (batch-norm statistics are kept) and runs
without autograd, whatever encoder it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlfuse.errors import ConfigError
from vlfuse.registry import IMAGE_ENCODERS, TEXT_ENCODERS
from vlfuse.retrieval.config import DualEncoderConfig, RetrievalConfig
from vlfuse.types import Batch


@dataclass
class DualOutput:
    """Paired embeddings of a batch: row i of `image` is the image of row i (shared images repeated)."""

    image: Tensor  # (B, E) L2-normalised
    text: Tensor  # (B, E) L2-normalised
    logit_scale: Tensor  # () 1 / temperature


def projection(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    if kind == "none":  # both towers already embed into one space (e.g. ConSE beside MiniLM)
        if in_dim != out_dim:
            raise ConfigError(f"model.projection none keeps the towers' widths, so both must equal model.embed_dim "
                              f"{out_dim}; a tower gives {in_dim}")  # fmt: skip
        return nn.Identity()
    if kind == "linear":
        return nn.Linear(in_dim, out_dim, bias=False)
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim))


def freeze(module: nn.Module) -> None:
    """No trainable parameters, eval mode (see DualEncoder.train)."""
    module.requires_grad_(False)
    module.eval()


class DualEncoder(nn.Module):
    """Image tower + projection and text tower + projection; embeddings are L2-normalised.

    Args:
        image_encoder: (U, C, H, W) → EncoderOutput with `.pooled` (U, D_img).
        text_encoder: (ids, mask) → EncoderOutput with `.pooled` (B, D_txt).
        cfg: embedding width, projection kind, temperature and freezing.
    """

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, cfg: DualEncoderConfig) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.image_proj = projection(cfg.projection, image_encoder.out_dim, cfg.embed_dim)
        self.text_proj = projection(cfg.projection, text_encoder.out_dim, cfg.embed_dim)
        self.log_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / cfg.temperature)), requires_grad=cfg.learn_temperature
        )
        self.max_log_scale = math.log(cfg.max_logit_scale)
        self.embed_dim = cfg.embed_dim
        # a tower is frozen when the config says so or it is itself frozen (a pretrained encoder with frozen: true)
        self.frozen = {"image": cfg.freeze_image or getattr(image_encoder, "frozen", False),
                       "text": cfg.freeze_text or getattr(text_encoder, "frozen", False)}  # fmt: skip
        if cfg.freeze_image:
            freeze(self.image_encoder)
        if cfg.freeze_text:
            freeze(self.text_encoder)

    def train(self, mode: bool = True) -> DualEncoder:
        super().train(mode)
        for name, tower in (("image", self.image_encoder), ("text", self.text_encoder)):
            if self.frozen[name]:
                tower.eval()
        return self

    @property
    def logit_scale(self) -> Tensor:
        return self.log_scale.clamp(max=self.max_log_scale).exp()  # ()

    def encode_images(self, images: Tensor) -> Tensor:
        """(U, C, H, W) preprocessed float images → (U, E) unit vectors."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen["image"]):
            pooled = self.image_encoder(images).pooled  # (U, D_img)
        return F.normalize(self.image_proj(pooled), dim=-1)  # (U, E)

    def encode_texts(self, ids: Tensor, mask: Tensor | None) -> Tensor:
        """(B, L) token ids and mask → (B, E) unit vectors."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen["text"]):
            pooled = self.text_encoder(ids, mask).pooled  # (B, D_txt)
        return F.normalize(self.text_proj(pooled), dim=-1)  # (B, E)

    def forward(self, batch: Batch) -> DualOutput:
        if batch.image_pooled is not None:  # a frozen tower's cached features (U, D_img)
            image = F.normalize(self.image_proj(batch.image_pooled), dim=-1)  # (U, E)
        else:
            image = self.encode_images(batch.image)  # (U, E) one per distinct image of the batch
        if batch.image_index is not None:
            image = image[batch.image_index]  # (B, E)
        text = self.encode_texts(batch.text_ids, batch.text_mask)  # (B, E)
        return DualOutput(image=image, text=text, logit_scale=self.logit_scale)


def build_dual_encoder(
    cfg: DualEncoderConfig, *, in_channels: int, image_size: int, vocab_size: int, pad_id: int, max_length: int
) -> DualEncoder:
    """Build both towers from the registries with sizes derived from the data and the tokenizer."""
    image_encoder = IMAGE_ENCODERS.build(cfg.image_encoder, in_channels=in_channels, image_size=image_size)
    text_encoder = TEXT_ENCODERS.build(cfg.text_encoder, vocab_size=vocab_size, pad_id=pad_id, max_length=max_length)
    return DualEncoder(image_encoder, text_encoder, cfg)


def build_for_run(cfg: RetrievalConfig, tokenizer) -> DualEncoder:
    """A retrieval run's dual encoder, sizes derived from its data settings and trained tokenizer."""
    return build_dual_encoder(
        cfg.model, in_channels=cfg.data.channels, image_size=cfg.data.image_size, vocab_size=tokenizer.vocab_size,
        pad_id=tokenizer.pad_id, max_length=cfg.data.max_text_length,
    )  # fmt: skip
