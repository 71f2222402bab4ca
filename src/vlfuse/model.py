"""The composite model (encoders → fusion → head) and the builder that wires derived sizes between them."""

from __future__ import annotations

from torch import Tensor, nn

from vlfuse.config import ModelConfig
from vlfuse.errors import ConfigError
from vlfuse.registry import FUSIONS, HEADS, IMAGE_ENCODERS, TEXT_ENCODERS
from vlfuse.types import Batch, EncoderOutput


class MultimodalModel(nn.Module):
    """Runs the present encoders, fuses their outputs and applies the head; receives built modules.

    Args:
        image_encoder: image (B, C, H, W) → EncoderOutput, or None when the model reads no images.
        text_encoder: (ids, mask) → EncoderOutput, or None when the model reads no text.
        fusion: (image out | None, text out | None) → (B, F).
        head: (B, F) → logits (B, K); nn.Identity when the fusion produces the logits (F = K).
    """

    def __init__(
        self, image_encoder: nn.Module | None, text_encoder: nn.Module | None, fusion: nn.Module, head: nn.Module
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.fusion = fusion
        self.head = head

    def forward(self, batch: Batch) -> Tensor:
        image = text = None
        if self.image_encoder is not None:
            if batch.image is None:
                raise ValueError("the model has an image encoder but the batch has no images")
            image = self.image_encoder(batch.image)  # per distinct image: tokens (U, N, D), pooled (U, D)
            if batch.image_index is not None:
                image = gather_rows(image, batch.image_index)  # tokens (B, N, D), pooled (B, D)
        if self.text_encoder is not None:
            if batch.text_ids is None:
                raise ValueError("the model has a text encoder but the batch has no text")
            text = self.text_encoder(batch.text_ids, batch.text_mask)
        fused = self.fusion(image, text)  # (B, F)
        return self.head(fused)  # (B, K)


def gather_rows(out: EncoderOutput, index: Tensor) -> EncoderOutput:
    """Expand per-image encoder outputs to per-row outputs: row b gets image index[b]."""
    mask = out.mask[index] if out.mask is not None else None
    return EncoderOutput(tokens=out.tokens[index], pooled=out.pooled[index], mask=mask)


def build_model(
    model_cfg: ModelConfig,
    *,
    in_channels: int | None,
    image_size: int | None,
    vocab_size: int | None,
    pad_id: int | None,
    max_length: int | None,
    num_outputs: int,
) -> MultimodalModel:
    """Build encoders, fusion and head from the registries, threading the derived sizes between them.

    Only the encoders the fusion reads are built: an `image_only` / `text_only` baseline drops the other one even
    when it is configured, so one config can be re-run as an ablation by overriding `model.fusion`.

    A fusion class with `produces_logits = True` (late fusion: a classifier per modality) is given `num_outputs`
    and returns the logits itself; its model gets no head (nn.Identity) and `model.head` is ignored.

    Args:
        model_cfg: the validated model section.
        in_channels: image channels (None or 0 when the data has no images).
        image_size: image height and width (None or 0 when the data has no images).
        vocab_size: tokenizer vocabulary size (None or 0 when the data has no text).
        pad_id: tokenizer padding id (None when the data has no text).
        max_length: padded text length in tokens (None or 0 when the data has no text).
        num_outputs: logits per sample (1 for binary tasks).

    Raises:
        ConfigError: the fusion needs a modality that has no encoder, or an encoder is set for absent data.
    """
    fusion_name = model_cfg.fusion.name
    fusion_cls = FUSIONS.component_class(fusion_name)
    needs = getattr(fusion_cls, "modalities", ("image", "text"))
    produces_logits = getattr(fusion_cls, "produces_logits", False)
    encoders = {"image": model_cfg.image_encoder, "text": model_cfg.text_encoder}
    missing = [m for m in needs if encoders[m] is None]
    if missing:
        unset = " and ".join(f"model.{m}_encoder" for m in missing)
        raise ConfigError(
            f"model.fusion: '{fusion_name}' needs {' and '.join(needs)} features, but {unset} is not set; "
            f"set it, or use a fusion for the modalities you have (image_only, text_only)"
        )
    image_encoder = text_encoder = None
    if "image" in needs:
        if not in_channels or not image_size:
            raise ConfigError("model.image_encoder is set (the fusion reads images) but the data has no images")
        image_encoder = IMAGE_ENCODERS.build(model_cfg.image_encoder, in_channels=in_channels, image_size=image_size)
    if "text" in needs:
        if not vocab_size or pad_id is None or not max_length:
            raise ConfigError("model.text_encoder is set (the fusion reads text) but the data has no text")
        text_encoder = TEXT_ENCODERS.build(
            model_cfg.text_encoder, vocab_size=vocab_size, pad_id=pad_id, max_length=max_length
        )
    fusion = FUSIONS.build(
        model_cfg.fusion,
        image_dim=image_encoder.out_dim if image_encoder is not None else 0,
        image_token_dim=image_encoder.token_dim if image_encoder is not None else 0,
        text_dim=text_encoder.out_dim if text_encoder is not None else 0,
        text_token_dim=text_encoder.token_dim if text_encoder is not None else 0,
        **({"num_outputs": num_outputs} if produces_logits else {}),
    )
    if produces_logits:
        head: nn.Module = nn.Identity()  # the fusion's output already is the logits (B, K)
    else:
        head = HEADS.build(model_cfg.head, in_dim=fusion.out_dim, num_outputs=num_outputs)
    return MultimodalModel(image_encoder, text_encoder, fusion, head)


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameter elements in `model`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
