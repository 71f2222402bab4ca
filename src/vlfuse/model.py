"""The composite model (encoders → fusion → head) and the builder that wires derived sizes between them."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn

from vlfuse.config import ModelConfig
from vlfuse.errors import ConfigError
from vlfuse.registry import FUSIONS, HEADS, IMAGE_ENCODERS, TEXT_ENCODERS
from vlfuse.types import Batch, EncoderOutput

log = logging.getLogger(__name__)


class MultimodalModel(nn.Module):
    """Runs the present encoders, fuses their outputs and applies the head; receives built modules.

    A model with both encoders also holds placeholders (`ModalityPlaceholders`) that stand in for a missing image
    or text: for the rows a batch marks absent (`Batch.image_present` / `text_present`), or for every row when the
    batch has no images (`image=None`) or no text at all. With `modality_dropout` > 0 the placeholders are trainable and
    training adds rows with a modality removed (`add_missing_modality_rows`), so they learn.

    Args:
        image_encoder: image (B, C, H, W) → EncoderOutput, or None when the model reads no images.
        text_encoder: (ids, mask) → EncoderOutput, or None when the model reads no text.
        fusion: (image out | None, text out | None) → (B, F).
        head: (B, F) → logits (B, K); nn.Identity when the fusion produces the logits (F = K).
        modality_dropout: training-time probability that a sample also appears without its image (and, exclusively,
            without its text) — see `add_missing_modality_rows`; ignored, with a warning, when the model reads only
            one modality.
    """

    def __init__(
        self,
        image_encoder: nn.Module | None,
        text_encoder: nn.Module | None,
        fusion: nn.Module,
        head: nn.Module,
        *,
        modality_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= modality_dropout <= 0.5:
            raise ValueError(f"modality_dropout must be in [0, 0.5] (never both modalities), got {modality_dropout}")
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.fusion = fusion
        self.head = head
        self.placeholders: ModalityPlaceholders | None = None
        if image_encoder is not None and text_encoder is not None:
            dims = {
                "image": (image_encoder.out_dim, image_encoder.token_dim),
                "text": (text_encoder.out_dim, text_encoder.token_dim),
            }
            self.placeholders = ModalityPlaceholders(dims, learned=modality_dropout > 0)
        elif modality_dropout > 0:
            log.warning("model.modality_dropout=%s is ignored: the model reads only one modality", modality_dropout)
            modality_dropout = 0.0
        self.modality_dropout = modality_dropout

    def forward(self, batch: Batch) -> Tensor:
        image, text = self.encode(batch)  # per row: tokens (B, N, D) / (B, L, D), pooled (B, D); None: not read
        return self.fuse(image, text)  # (B, K)

    def fuse(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        """Per-row encoder outputs → logits (B, K): the fusion, then the head."""
        fused = self.fusion(image, text)  # (B, F)
        return self.head(fused)  # (B, K)

    def encode(self, batch: Batch) -> tuple[EncoderOutput | None, EncoderOutput | None]:
        """The per-row (image, text) encoder outputs the fusion reads, placeholders filled in where a row lacks one;
        None for a modality the model does not read. `fuse` of them is `forward(batch)` — kept apart so pairs of rows
        can be recombined without re-running the encoders (`vlfuse.explain.emap`)."""
        image_present, text_present = self._presence(batch)  # (B,) bool each, or None: every row has it
        image = text = None
        if self.image_encoder is not None:
            if batch.image is None and batch.image_tokens is None:
                image = self._all_missing("image", batch)  # tokens (B, 1, D), pooled (B, D)
            else:
                if batch.image_tokens is not None:  # cached features of a frozen tower: tokens (U, N, D), pooled (U, D)
                    image = EncoderOutput(tokens=batch.image_tokens, pooled=batch.image_pooled)
                    from_cached = getattr(self.image_encoder, "from_cached", None)  # a video tower: per-frame features
                    image = from_cached(image) if from_cached is not None else image  # tokens (U, N', D'), …
                else:
                    image = self.image_encoder(batch.image)  # per distinct image: tokens (U, N, D), pooled (U, D)
                if batch.image_index is not None:
                    image = gather_rows(image, batch.image_index)  # tokens (B, N, D), pooled (B, D)
                if image_present is not None:
                    image = self.placeholders.fill("image", image, image_present)
        if self.text_encoder is not None:
            if batch.text_ids is None:
                text = self._all_missing("text", batch)  # tokens (B, 1, D), pooled (B, D)
            else:
                text = self.text_encoder(batch.text_ids, batch.text_mask)  # tokens (B, L, D), pooled (B, D)
                if text_present is not None:
                    text = self.placeholders.fill("text", text, text_present)
        return image, text

    def _presence(self, batch: Batch) -> tuple[Tensor | None, Tensor | None]:
        """Per-row presence masks from the batch."""
        image_present, text_present = batch.image_present, batch.text_present
        if self.placeholders is None:
            if image_present is not None or text_present is not None:
                raise ValueError("only a model with both an image and a text encoder can do without one of them")
            return None, None
        return image_present, text_present

    def _all_missing(self, name: str, batch: Batch) -> EncoderOutput:
        if self.placeholders is None:
            raise ValueError(f"the model has an {name} encoder but the batch has no {name}")
        return self.placeholders.full(name, len(batch))


class ModalityPlaceholders(nn.Module):
    """Stand-ins for a missing modality's encoder output: a pooled vector (D,) and one token (D_tok,) per modality.

    They start at zero (no random draw, so building them leaves the RNG stream of the rest of the model unchanged)
    and are trainable parameters only when the model trains with modality dropout; otherwise they are zero buffers,
    so a model trained without dropout keeps its parameter count, optimizer and results, and a missing modality
    is then imputed with (untrained) zeros. Weights saved before placeholders existed load with zeros.

    Args:
        dims: modality name → (pooled width D, token width D_tok).
        learned: register trainable parameters (True) or fixed zero buffers (False).
    """

    def __init__(self, dims: dict[str, tuple[int, int]], *, learned: bool) -> None:
        super().__init__()
        self.learned = learned
        for name, (pooled_dim, token_dim) in dims.items():
            for kind, dim in (("pooled", pooled_dim), ("token", token_dim)):
                if learned:
                    self.register_parameter(f"{name}_{kind}", nn.Parameter(torch.zeros(dim)))  # (D,)
                else:
                    self.register_buffer(f"{name}_{kind}", torch.zeros(dim))  # (D,)
        self.register_load_state_dict_pre_hook(_keep_missing_placeholders)

    def _vectors(self, name: str) -> tuple[Tensor, Tensor]:
        """The (pooled (D,), token (D_tok,)) placeholders of one modality.

        While training, each is tied to the other with a zero-weighted term, so both receive a (zero) gradient even
        under a fusion that reads only pooled vectors or only tokens: DistributedDataParallel requires every
        trainable parameter to take part in the loss.
        """
        pooled, token = getattr(self, f"{name}_pooled"), getattr(self, f"{name}_token")  # (D,), (D_tok,)
        if self.learned and torch.is_grad_enabled():
            tie = 0.0 * (pooled.sum() + token.sum())  # () zero, but connects both parameters to either output
            pooled, token = pooled + tie, token + tie
        return pooled, token

    def full(self, name: str, batch_size: int) -> EncoderOutput:
        """The placeholder for every row: one real token per row."""
        pooled, token = self._vectors(name)  # (D,), (D_tok,)
        return EncoderOutput(
            tokens=token.expand(batch_size, 1, -1).contiguous(),  # (B, 1, D_tok)
            pooled=pooled.expand(batch_size, -1).contiguous(),  # (B, D)
        )

    def fill(self, name: str, out: EncoderOutput, present: Tensor) -> EncoderOutput:
        """Replace the rows where `present` (B,) is False: placeholder pooled vector, placeholder as the only real
        token (the row's other tokens are masked out)."""
        pooled_ph, token_ph = self._vectors(name)
        pooled_ph, token_ph = pooled_ph.to(out.pooled.dtype), token_ph.to(out.tokens.dtype)  # (D,), (D_tok,)
        keep = present.bool().view(-1, 1)  # (B, 1)
        first = torch.arange(out.tokens.shape[1], device=present.device) == 0  # (T,)
        token_row = token_ph * first[:, None].to(token_ph.dtype)  # (T, D_tok): placeholder, then zeros
        real = out.mask if out.mask is not None else torch.ones_like(keep).expand(-1, first.shape[0])  # (B, T)
        return EncoderOutput(
            tokens=torch.where(keep.unsqueeze(-1), out.tokens, token_row),  # (B, T, D_tok)
            pooled=torch.where(keep, out.pooled, pooled_ph),  # (B, D)
            mask=(keep & real) | (~keep & first),  # (B, T); not torch.where: onnxruntime has no Where for bool
        )


def _keep_missing_placeholders(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Load hook: weights saved before placeholders existed keep the current (zero) placeholders."""
    for name, value in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
        state_dict.setdefault(prefix + name, value.detach().clone())


def add_missing_modality_rows(batch: Batch, p: float) -> Batch:
    """Modality dropout as extra rows: each complete row is, with probability p, repeated without its image, else with
    probability p repeated without its text (never both); the original rows stay as they are.

    Replacing rows instead would take a 2p share of the complete-input training signal away, which costs accuracy on
    complete inputs; appended rows keep it and cost little, because the image tower still runs once per distinct
    image (the copies point at the same image through `image_index`) and the copies only add text-tower, fusion and
    head work. Draws from torch's global CPU generator, which checkpoints save, so resume stays exact.

    Args:
        batch: a training batch with images and text, B rows.
        p: per-row probability of each kind of copy, in [0, 0.5].

    Returns:
        a batch of B + E rows (E ≈ 2pB): the B originals, then the image-less copies, then the text-less copies.
    """
    n = len(batch)
    if p <= 0 or (batch.image is None and batch.image_tokens is None) or batch.text_ids is None or n == 0:
        return batch
    device = batch.text_ids.device
    u = torch.rand(n).to(device)  # (B,)
    every = torch.ones(n, dtype=torch.bool, device=device)  # (B,)
    image_present = batch.image_present if batch.image_present is not None else every  # (B,)
    text_present = batch.text_present if batch.text_present is not None else every  # (B,)
    complete = image_present & text_present  # (B,) a copy never loses the only modality a row has
    without_image = torch.nonzero(complete & (u < p)).flatten()  # (E1,)
    without_text = torch.nonzero(complete & (u >= p) & (u < 2 * p)).flatten()  # (E2,)
    if without_image.numel() + without_text.numel() == 0:
        return batch
    rows = torch.cat([torch.arange(n, device=device), without_image, without_text])  # (B + E,)
    image_index = batch.image_index if batch.image_index is not None else torch.arange(n, device=device)  # (B,)
    no = torch.zeros  # (E1,) / (E2,) absent flags
    return Batch(
        image=batch.image,  # (U, C, H, W) unchanged: copies share their originals' images
        image_tokens=batch.image_tokens,  # (U, N, D) likewise, when the image features are cached
        image_pooled=batch.image_pooled,
        text_ids=batch.text_ids[rows],  # (B + E, L)
        text_mask=batch.text_mask[rows] if batch.text_mask is not None else None,
        label=batch.label[rows] if batch.label is not None else None,
        index=batch.index[rows] if batch.index is not None else None,
        image_index=image_index[rows],  # (B + E,)
        image_present=torch.cat(
            [image_present, no(len(without_image), dtype=torch.bool, device=device), image_present[without_text]]
        ),  # fmt: skip
        text_present=torch.cat(
            [text_present, text_present[without_image], no(len(without_text), dtype=torch.bool, device=device)]
        ),  # fmt: skip
    )


def gather_rows(out: EncoderOutput, index: Tensor) -> EncoderOutput:
    """Expand per-image encoder outputs to per-row outputs: row b gets image index[b].

    `index_select`, not `tensor[index]`: its backward is a vectorised index_add (for the classic model's (32, 30752)
    pooled rows on a CPU, 1.1 vs 3.5 ms forward + backward)."""
    mask = out.mask.index_select(0, index) if out.mask is not None else None
    return EncoderOutput(tokens=out.tokens.index_select(0, index), pooled=out.pooled.index_select(0, index), mask=mask)


def build_model(
    model_cfg: ModelConfig,
    *,
    in_channels: int | None,
    image_size: int | None,
    vocab_size: int | None,
    pad_id: int | None,
    max_length: int | None,
    num_outputs: int,
    wrap_image_encoder: Callable[[nn.Module], nn.Module] | None = None,
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
        wrap_image_encoder: turns the built image encoder into the image side the fusion reads (the video task wraps
            it as a per-frame tower followed by a temporal module); None: the image encoder itself.

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
        if wrap_image_encoder is not None:
            image_encoder = wrap_image_encoder(image_encoder)
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
    return MultimodalModel(image_encoder, text_encoder, fusion, head, modality_dropout=model_cfg.modality_dropout)


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameter elements in `model`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
