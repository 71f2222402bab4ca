"""Embedding many images or texts with a dual encoder, in batches, without gradients."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vlfuse.data.captions import CaptionedImages
from vlfuse.data.text import TextTokenizer
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.retrieval.data import eval_captions
from vlfuse.retrieval.loss import contrastive_loss, positive_mask
from vlfuse.retrieval.metrics import retrieval_metrics
from vlfuse.retrieval.model import DualEncoder

LOSS_IMAGES = 4096


@torch.inference_mode()
def embed_images(
    model: DualEncoder, images: Tensor, preprocess: ImagePreprocessor, *, batch_size: int = 512,
    device: torch.device | str = "cpu", image_pooled: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """(M, C, H, W) uint8 images → (M, E) float32 unit vectors on the CPU; with `image_pooled` (M, D_img), a frozen
    tower's cached features of those images, only the projection runs."""
    if image_pooled is not None:
        return F.normalize(model.image_proj(image_pooled.to(device)), dim=-1).float().cpu()  # (M, E)
    was_training = model.training
    if was_training:  # switching walks every module: only when needed (a loaded run is in eval mode already)
        model.eval()
    out = torch.empty(len(images), model.embed_dim)  # (M, E)
    for start in range(0, len(images), batch_size):
        chunk = preprocess(images[start : start + batch_size]).to(device)  # (b, C, H, W) float
        out[start : start + len(chunk)] = model.encode_images(chunk).float().cpu()
    if was_training:
        model.train()
    return out


@torch.inference_mode()
def embed_texts(
    model: DualEncoder, tokenizer: TextTokenizer, texts: Sequence[str], *, batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> Tensor:  # fmt: skip
    """Captions → (T, E) float32 unit vectors on the CPU (padding trimmed per batch)."""
    was_training = model.training
    model.eval()
    out = torch.empty(len(texts), model.embed_dim)  # (T, E)
    for start in range(0, len(texts), batch_size):
        ids, mask = tokenizer.encode([[t] for t in texts[start : start + batch_size]])  # (b, L), (b, L)
        length = max(1, int(mask.sum(1).max()))
        emb = model.encode_texts(ids[:, :length].to(device), mask[:, :length].to(device))  # (b, E)
        out[start : start + len(ids)] = emb.float().cpu()
    model.train(was_training)
    return out


def evaluate_captioned(
    model: DualEncoder, images: CaptionedImages, key_ids: Tensor, tokenizer: TextTokenizer,
    preprocess: ImagePreprocessor, *, batch_size: int, device: torch.device | str = "cpu",
    image_pooled: Tensor | None = None,
) -> dict[str, float]:  # fmt: skip
    """Retrieval metrics of a split (each image paired with one caption) plus the contrastive loss at the model's
    temperature over the split (over `LOSS_IMAGES` evenly spaced images of a larger one)."""
    image_emb = embed_images(model, images.images, preprocess, batch_size=batch_size, device=device,
                             image_pooled=image_pooled)  # (M, E)
    text_emb = embed_texts(model, tokenizer, eval_captions(images), device=device)  # (M, E)
    metrics = retrieval_metrics(image_emb, text_emb, key_ids, key_ids)
    some = torch.linspace(0, len(images) - 1, min(len(images), LOSS_IMAGES)).round().long()  # (n,)
    with torch.inference_mode():
        scale = float(model.logit_scale)
        loss = contrastive_loss(image_emb[some], text_emb[some], scale, positive_mask(key_ids[some]))
    metrics["loss"] = float(loss)
    metrics["images"] = len(images)
    return metrics
