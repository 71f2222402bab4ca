"""Pixel and word attributions of one row through Captum, and the attention maps of attention-based fusions.

Every map explains one label (`target`) through its score — the logit (`target.scores`): a confident prediction's
probability is flat and its gradient vanishes. Pixel maps come back as (H, W) at the model's input
resolution: Grad-CAM upsampled from the image tower's last spatial layer (ReLU'd, as in Selvaraju et al.); Integrated
Gradients and occlusion summed over channels. Word scores are one number per real token: Integrated Gradients on the
text tower's embedding layer (summed over the embedding width), or occlusion (the drop when the token becomes
[UNK]). Removal means the same everywhere: a pixel takes its image's mean colour (`removed_pixels`), a token [UNK].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlfuse.errors import ConfigError
from vlfuse.explain.target import removed_pixels, scores, with_pixels, with_text
from vlfuse.layers import MultiHeadAttention
from vlfuse.objective import Objective
from vlfuse.types import Batch

PIXEL_METHODS = ("gradcam", "ig", "occlusion")


def last_spatial_layer(image_encoder: nn.Module, pixels: Tensor) -> nn.Module:
    """Grad-CAM's layer: the last layer of the image tower (a leaf module, not a pooling one) whose output is a
    spatial map (B, C, h, w) with h, w > 1 — the last convolution block's activations, before any final
    downsampling (for a ViT, the patch embedding: its only spatial map). Found by running the tower once with hooks,
    so it works for any encoder that produces its maps through modules.

    Raises:
        ConfigError: the tower has no spatial map (a ViT, a text-only model).
    """
    seen: list[nn.Module] = []
    pools = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    leaves = [m for m in image_encoder.modules() if not list(m.children()) and not isinstance(m, pools)]
    hooks = [m.register_forward_hook(lambda mod, _i, out: seen.append(mod) if isinstance(out, Tensor)
                                     and out.dim() == 4 and min(out.shape[2:]) > 1 else None)
             for m in leaves]  # fmt: skip
    try:
        with torch.no_grad():
            image_encoder(pixels)
    finally:
        for h in hooks:
            h.remove()
    if not seen:
        raise ConfigError(
            f"Grad-CAM needs a spatial feature map, and the image tower '{type(image_encoder).__name__}' has none; "
            "use --method ig or occlusion"
        )
    return seen[-1]


def _pixel_forward(model: nn.Module, objective: Objective, batch: Batch):
    def forward(pixels: Tensor) -> Tensor:  # (S, C, H, W) → (S, num_labels)
        return scores(model, objective, with_pixels(batch, pixels))

    return forward


def grad_cam(model: nn.Module, objective: Objective, batch: Batch, target: int) -> Tensor:
    """(H, W) Grad-CAM of the label `target` on the image tower's last spatial layer, upsampled (bilinear)."""
    from captum.attr import LayerAttribution, LayerGradCam

    pixels = batch.image  # (1, C, H, W)
    layer = last_spatial_layer(model.image_encoder, pixels)
    cam = LayerGradCam(_pixel_forward(model, objective, batch), layer).attribute(
        pixels, target=target, relu_attributions=True
    )  # (1, 1, h, w)
    return LayerAttribution.interpolate(cam.detach(), pixels.shape[2:], "bilinear")[0, 0].float()  # (H, W)


def integrated_gradients(
    model: nn.Module, objective: Objective, batch: Batch, target: int, *, steps: int = 32, internal_batch_size: int = 32
) -> tuple[Tensor, float]:
    """(H, W) Integrated Gradients on the pixels from a mean-colour baseline (summed over channels), and the
    convergence delta (sum of attributions − (f(x) − f(baseline)); near 0 when the steps suffice). The baseline
    is the image with every pixel removed (`removed_pixels`)."""
    from captum.attr import IntegratedGradients

    pixels = batch.image  # (1, C, H, W)
    attr, delta = IntegratedGradients(_pixel_forward(model, objective, batch)).attribute(
        pixels, baselines=removed_pixels(pixels), target=target, n_steps=steps,
        internal_batch_size=internal_batch_size, return_convergence_delta=True,
    )  # fmt: skip
    return attr.detach()[0].sum(0).float(), float(delta.abs().max())  # (H, W)


def occlusion(
    model: nn.Module, objective: Objective, batch: Batch, target: int, *, window: int | None = None
) -> Tensor:
    """(H, W) occlusion: the drop of the label's score when a window of pixels is removed (each pixel averages
    the windows covering it; removed pixels as in `removed_pixels`). Window 1/8 of the side, stride half of it."""
    from captum.attr import Occlusion

    pixels = batch.image  # (1, C, H, W)
    side = window or max(2, pixels.shape[-1] // 8)
    stride = max(1, side // 2)
    with torch.no_grad():
        attr = Occlusion(_pixel_forward(model, objective, batch)).attribute(
            pixels, sliding_window_shapes=(pixels.shape[1], side, side), strides=(pixels.shape[1], stride, stride),
            baselines=removed_pixels(pixels), target=target, perturbations_per_eval=64,
        )  # fmt: skip
    return attr[0].mean(0).float()  # (H, W)


def pixel_map(
    method: str, model: nn.Module, objective: Objective, batch: Batch, target: int, *, steps: int = 32
) -> Tensor:
    """(H, W) map of one of PIXEL_METHODS."""
    if method == "gradcam":
        return grad_cam(model, objective, batch, target)
    if method == "ig":
        return integrated_gradients(model, objective, batch, target, steps=steps)[0]
    if method == "occlusion":
        return occlusion(model, objective, batch, target)
    raise ValueError(f"unknown pixel method '{method}'; expected one of {', '.join(PIXEL_METHODS)}")


def embedding_layer(text_encoder: nn.Module, vocab_size: int) -> nn.Embedding:
    """The text tower's token embedding: its first nn.Embedding over the tokenizer's vocabulary."""
    for module in text_encoder.modules():
        if isinstance(module, nn.Embedding) and module.num_embeddings == vocab_size:
            return module
    raise ConfigError(f"the text tower '{type(text_encoder).__name__}' has no token embedding of {vocab_size} ids")


def word_integrated_gradients(
    model: nn.Module, objective: Objective, batch: Batch, target: int, *, vocab_size: int, unk_id: int,
    steps: int = 32, internal_batch_size: int = 32,
) -> tuple[Tensor, float]:  # fmt: skip
    """(L_real,) Integrated Gradients of the real tokens on the embedding layer, from all-[UNK] embeddings; and
    the convergence delta."""
    from captum.attr import LayerIntegratedGradients

    ids, mask = batch.text_ids, batch.text_mask  # (1, L)
    positions = torch.nonzero(mask[0]).flatten()  # (L_real,)
    baseline = ids.clone()
    baseline[0, positions] = unk_id

    def forward(tok: Tensor) -> Tensor:  # (S, L) → (S, num_labels)
        return scores(model, objective, with_text(batch, tok))

    lig = LayerIntegratedGradients(forward, embedding_layer(model.text_encoder, vocab_size))
    attr, delta = lig.attribute(ids, baselines=baseline, target=target, n_steps=steps,
                                internal_batch_size=internal_batch_size, return_convergence_delta=True)  # fmt: skip
    return attr.detach()[0].sum(-1)[positions].float(), float(delta.abs().max())  # (L_real,)


@torch.no_grad()
def word_occlusion(model: nn.Module, objective: Objective, batch: Batch, target: int, *, unk_id: int) -> Tensor:
    """(L_real,) the drop of the label's probability when each real token alone becomes [UNK]."""
    ids, mask = batch.text_ids, batch.text_mask  # (1, L)
    positions = torch.nonzero(mask[0]).flatten()  # (L_real,)
    variants = ids.repeat(len(positions) + 1, 1)  # (L_real + 1, L): the original, then one token replaced each
    variants[torch.arange(1, len(positions) + 1), positions] = unk_id
    s = scores(model, objective, with_text(batch, variants))[:, target]  # (L_real + 1,)
    return s[0] - s[1:]  # (L_real,)


@torch.no_grad()
def attention_maps(model: nn.Module, batch: Batch, grid: tuple[int, int] | None = None) -> dict[str, Tensor]:
    """The attention weights of an attention-based fusion over the image tokens, read off its MultiHeadAttention
    layers (the weights are the input of each layer's dropout, identity in eval mode).

    Returns:
        name → (L, N) weights of the layer whose context is the image tokens, averaged over heads (queries are text
        tokens); empty when the fusion has no attention over image tokens.
    """
    image, text = model.encode(batch)
    n_image = image.tokens.shape[1] if image is not None else -1
    maps: dict[str, Tensor] = {}
    hooks = []
    for name, module in model.fusion.named_modules():
        if isinstance(module, MultiHeadAttention):

            def keep(mod, inputs, _out, name=name):
                weights = inputs[0]  # (B, h, L, N)
                if weights.shape[-1] == n_image:
                    maps[name] = weights[0].mean(0).float().cpu()  # (L, N)

            hooks.append(module.dropout.register_forward_hook(keep))
    try:
        model.fuse(image, text)
    finally:
        for h in hooks:
            h.remove()
    return maps


def attention_pixel_map(weights: Tensor, token_positions: list[int], size: tuple[int, int]) -> Tensor:
    """(H, W): the attention of the real text tokens (mean over them) over a square grid of image tokens, upsampled."""
    per_cell = weights[token_positions].mean(0)  # (N,)
    side = int(round(per_cell.numel() ** 0.5))
    if side * side != per_cell.numel():
        raise ValueError(f"{per_cell.numel()} image tokens do not form a square grid")
    cells = per_cell.view(1, 1, side, side)
    return F.interpolate(cells, size=size, mode="bilinear", align_corners=False)[0, 0]  # (H, W)
