"""ConSE (Norouzi et al., ICLR 2014): an image as the probability-weighted mean of its ImageNet class names' sentence
embeddings — an image tower that lives in the text tower's space without any training.

The pretrained EfficientNet-Lite0 classifier gives 1,000 ImageNet probabilities; the `top_k` most likely classes'
embeddings (all-MiniLM-L6-v2 of `class_text`: by default the class's first WordNet name and its gloss, unit
length) are mixed with their renormalised probabilities. Put beside a frozen MiniLM text tower with no
projection, label prompts and captions compare to images by cosine: zero-shot labels and search on real photos.

The class embeddings (1000, 384) are computed once per (MiniLM weights, names file, phrasing) and kept in
vlfuse's cache; they are a buffer, never part of a run's weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from vlfuse.atomic import atomic_write
from vlfuse.data.vocab import IMAGENET_FILE, imagenet_classes
from vlfuse.encoders.frozen import FreezableNet
from vlfuse.encoders.image.efficientnet_lite0 import load_efficientnet_lite0
from vlfuse.errors import ConfigError
from vlfuse.pretrained import cache_root, file_fingerprint
from vlfuse.registry import IMAGE_ENCODERS, ComponentConfig
from vlfuse.types import EncoderOutput

log = logging.getLogger(__name__)

EMBED_DIM = 384  # all-MiniLM-L6-v2


class ImageNetConSEConfig(ComponentConfig):
    name: Literal["imagenet_conse"] = "imagenet_conse"
    top_k: int = Field(10, ge=1, le=1000)  # classes mixed per image (ConSE's T)
    resolution: int = Field(224, ge=32)  # the classifier's input side (EfficientNet-Lite0 was trained at 224)
    # how a class is phrased before it is embedded: {name} its first WordNet name, {names} its first `synonyms`
    # names joined by commas, {definition} its WordNet gloss (the gloss places "seashore" near "beach", etc.)
    class_text: str = "{name}: {definition}"
    synonyms: int = Field(1, ge=1, le=8)
    frozen: bool = True  # keep the ImageNet classifier fixed (False: fine-tune it through the mixture)

    tiny: ClassVar[dict[str, Any]] = {"resolution": 32, "top_k": 3, "frozen": False}


def class_embedding_key(cfg: ImageNetConSEConfig) -> str:
    """Identifies the class embeddings: MiniLM's weights file, the names file and the phrasing."""
    from vlfuse.encoders.text.minilm import minilm_dir

    raw = json.dumps({"minilm": file_fingerprint(minilm_dir() / "model.safetensors"),
                      "names": hashlib.sha256(IMAGENET_FILE.read_bytes()).hexdigest()[:16],
                      "text": cfg.class_text, "synonyms": cfg.synonyms})  # fmt: skip
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


SLOTS = ("{name}", "{names}", "{definition}")


def class_texts(cfg: ImageNetConSEConfig) -> list[str]:
    """Per ImageNet class, the text embedded for it (`class_text` with its slots filled)."""
    if not any(slot in cfg.class_text for slot in SLOTS):
        raise ConfigError(f"model.image_encoder.class_text {cfg.class_text!r} needs one of the slots "
                          f"{', '.join(SLOTS)}")
    return [cfg.class_text.replace("{names}", ", ".join(c.names[: cfg.synonyms])).replace("{name}", c.names[0])
            .replace("{definition}", c.definition) for c in imagenet_classes()]  # fmt: skip


@torch.inference_mode()
def compute_class_embeddings(cfg: ImageNetConSEConfig) -> Tensor:
    """(1000, 384) unit vectors: per class the MiniLM embedding of its text (masked mean, as the text tower pools)."""
    from vlfuse.data.text import TextTokenizer
    from vlfuse.encoders.text.minilm import MiniLMConfig, MiniLMEncoder

    texts = class_texts(cfg)
    text_cfg = MiniLMConfig()
    tokenizer = TextTokenizer.pretrained(text_cfg.pretrained_tokenizer(), max_length=128)
    encoder = MiniLMEncoder(text_cfg, vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, max_length=128)
    encoder.eval()
    out = []
    for start in range(0, len(texts), 128):
        ids, mask = tokenizer.encode([[t] for t in texts[start : start + 128]])  # (b, L)
        length = max(1, int(mask.sum(1).max()))
        out.append(F.normalize(encoder(ids[:, :length], mask[:, :length]).pooled, dim=-1))  # (b, 384)
    return torch.cat(out)  # (1000, 384)


def class_embeddings(cfg: ImageNetConSEConfig) -> Tensor:
    """`compute_class_embeddings`, from vlfuse's cache when it holds them (written whole or not at all)."""
    from safetensors.torch import load_file, save_file

    file = cache_root() / "conse" / f"imagenet-{class_embedding_key(cfg)}.safetensors"
    if file.is_file():
        return load_file(str(file))["classes"]
    log.info("embedding the 1,000 ImageNet class names with MiniLM (once; cached in %s)", file.parent)
    emb = compute_class_embeddings(cfg)
    atomic_write(file, lambda tmp: save_file({"classes": emb.contiguous()}, str(tmp)))
    return emb


@IMAGE_ENCODERS.register("imagenet_conse", ImageNetConSEConfig)
class ImageNetConSEEncoder(FreezableNet):
    """EfficientNet-Lite0's ImageNet probabilities → ConSE mix of class-name embeddings (frozen by default).

    Args:
        cfg: top_k, resolution, class phrasing.
        in_channels: 1 (repeated to RGB) or 3; images normalised with mean = std = 0.5 (≈ the network's scaling).
        image_size: input side (resized to `cfg.resolution`).
    """

    def __init__(self, cfg: ImageNetConSEConfig, *, in_channels: int, image_size: int) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ConfigError(f"model.image_encoder: imagenet_conse reads 1 or 3 channels, got {in_channels}")
        self.cfg = cfg
        # channels-last convolutions: 31 instead of 37 ms for one 224-px photo on 2 CPU threads (measured)
        self.net = load_efficientnet_lite0(cfg.resolution).to(memory_format=torch.channels_last)
        self.register_buffer("classes", class_embeddings(cfg), persistent=False)  # (1000, 384)
        self.out_dim = self.token_dim = EMBED_DIM
        self.freeze_net(cfg.frozen)
        self.net.eval()  # always (see `train`)

    def train(self, mode: bool = True) -> ImageNetConSEEncoder:
        """The classifier always runs as evaluated (BatchNorm statistics kept, no drop-connect), even when fine-tuned:
        ConSE reads its probabilities, which training-mode noise would distort."""
        super().train(mode)
        self.net.eval()
        return self

    def cache_key(self) -> str:
        """Identifies the features this encoder computes, for caches."""
        return hashlib.sha256(f"{self.cfg.model_dump_json()}:{class_embedding_key(self.cfg)}".encode()).hexdigest()[:16]

    def features_and_logits(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, H, W) normalised images → (B, 1280) pooled penultimate features and (B, 1000) ImageNet logits."""
        x = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image  # (B, 3, H, W)
        side = self.cfg.resolution
        if x.shape[-1] != side or x.shape[-2] != side:
            shrink = x.shape[-1] > side and not torch.onnx.is_in_onnx_export()  # ONNX has no antialiased resize
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=shrink)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            pooled = self.net.extract_features(x).mean(dim=(2, 3))  # (B, 1280)
            return pooled, self.net._fc(pooled)  # noqa: SLF001  (B, 1000); dropout is off in eval

    def logits(self, image: Tensor) -> Tensor:
        """(B, C, H, W) normalised images → (B, 1000) ImageNet logits."""
        return self.features_and_logits(image)[1]

    def mix(self, logits: Tensor) -> Tensor:
        """(B, 1000) logits → (B, 384) ConSE embeddings (not normalised)."""
        probs = logits.softmax(dim=-1)  # (B, 1000)
        top, index = probs.topk(self.cfg.top_k, dim=-1)  # (B, T)
        weights = top / top.sum(dim=-1, keepdim=True)  # (B, T)
        return torch.einsum("bt,btd->bd", weights, self.classes[index])  # (B, 384)

    def forward(self, image: Tensor) -> EncoderOutput:
        pooled = self.mix(self.logits(image))  # (B, 384)
        return EncoderOutput(tokens=pooled[:, None, :], pooled=pooled)  # (B, 1, 384), (B, 384)
