"""How much each modality drove a prediction.

`modality_shapley` is the exact Shapley value of the two-player game image vs text: the value of a coalition is the
explained label's probability with the other modality removed — replaced by the model's placeholder (the stand-in
every model reading both modalities has for a missing one, `MultimodalModel.placeholders`). With f(I, T), f(I, ∅),
f(∅, T), f(∅, ∅):

    φ_image = ½ [(f(I, T) − f(∅, T)) + (f(I, ∅) − f(∅, ∅))],   φ_text likewise,   φ_image + φ_text = f(I, T) − f(∅, ∅).

`token_patch_shapley` is the MM-SHAP-style view (Parcalabescu & Frank, ACL 2023): Shapley values of every image
patch and every text token (Captum's permutation sampling; a removed patch takes the image's mean colour, a removed
token becomes [UNK]); the image's share is Σ|φ_patches| / (Σ|φ_patches| + Σ|φ_tokens|).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from vlfuse.explain.target import probabilities, removed_pixels, with_pixels
from vlfuse.objective import Objective
from vlfuse.types import Batch


@dataclass
class ModalityShapley:
    """Per-row exact two-player Shapley values (tensors (B,)) and the four coalition values they come from."""

    image: Tensor
    text: Tensor
    both: Tensor
    image_only: Tensor
    text_only: Tensor
    none: Tensor

    @property
    def image_share(self) -> Tensor:
        """|φ_image| / (|φ_image| + |φ_text|) per row (0.5 when neither moves the output)."""
        total = self.image.abs() + self.text.abs()  # (B,)
        return torch.where(total > 0, self.image.abs() / total.clamp_min(1e-12), 0.5)

    def row(self, b: int = 0) -> dict[str, float]:
        share = float(self.image_share[b])
        return {
            "image": float(self.image[b]), "text": float(self.text[b]), "image_share": share,
            "text_share": 1 - share, "f_both": float(self.both[b]), "f_image_only": float(self.image_only[b]),
            "f_text_only": float(self.text_only[b]), "f_none": float(self.none[b]),
        }  # fmt: skip


@torch.inference_mode()
def modality_shapley(
    model: nn.Module, objective: Objective, batch: Batch, target: Tensor | None = None
) -> ModalityShapley:
    """Exact two-player Shapley values of image and text for every row of `batch`.

    Args:
        model: a MultimodalModel reading both modalities (so it has placeholders), in eval mode.
        objective: the run's objective (how logits become probabilities).
        batch: B rows with both modalities.
        target: (B,) the label index explained per row; None: each row's predicted label.
    """
    full = probabilities(model, objective, batch)  # (B, num_labels)
    target = full.argmax(-1) if target is None else target.to(full.device)  # (B,)
    rows = torch.arange(len(batch), device=full.device)  # (B,)
    absent = torch.zeros(len(batch), dtype=torch.bool, device=full.device)  # (B,)

    def value(**removed: Tensor) -> Tensor:
        return probabilities(model, objective, replace(batch, **removed))[rows, target]  # (B,)

    both = full[rows, target]
    text_only = value(image_present=absent)
    image_only = value(text_present=absent)
    none = value(image_present=absent, text_present=absent)
    return ModalityShapley(
        image=0.5 * ((both - text_only) + (image_only - none)), text=0.5 * ((both - image_only) + (text_only - none)),
        both=both, image_only=image_only, text_only=text_only, none=none,
    )  # fmt: skip


def patch_mask(height: int, width: int, grid: int) -> Tensor:
    """(H, W) long: the id of the grid × grid patch each pixel belongs to (row-major)."""
    rows = torch.arange(height) * grid // height  # (H,)
    cols = torch.arange(width) * grid // width  # (W,)
    return rows[:, None] * grid + cols[None, :]  # (H, W)


def token_patch_shapley(
    model: nn.Module, objective: Objective, batch: Batch, target: int, *, unk_id: int, grid: int = 4,
    samples: int = 25, seed: int = 0,
) -> dict[str, object]:  # fmt: skip
    """MM-SHAP-style Shapley values of the grid × grid image patches and the real text tokens of one row.

    Returns:
        patches (grid, grid) values, tokens (L_real,) values, and image_share = Σ|patches| / (Σ|patches| + Σ|tokens|).
    """
    from captum.attr import ShapleyValueSampling

    pixels, ids, mask = batch.image, batch.text_ids, batch.text_mask  # (1, C, H, W), (1, L), (1, L)
    _, channels, height, width = pixels.shape
    positions = torch.nonzero(mask[0]).flatten()  # (L_real,)
    n_patches = grid * grid
    pixel_features = (
        patch_mask(height, width, grid).to(pixels.device).expand(1, channels, -1, -1).contiguous()
    )  # (1, C, H, W)
    token_features = torch.full_like(ids, n_patches + len(positions))  # (1, L): padding → one inert feature
    token_features[0, positions] = n_patches + torch.arange(len(positions), device=ids.device)
    ids_baseline = ids.clone()
    ids_baseline[0, positions] = unk_id  # (1, L)

    def forward(pix: Tensor, tok: Tensor) -> Tensor:  # (S, C, H, W), (S, L) → (S, num_labels)
        return probabilities(model, objective, replace(with_pixels(batch, pix), text_ids=tok,
                                                       text_mask=mask.expand(len(tok), -1)))  # fmt: skip

    torch.manual_seed(seed)  # the permutations Captum draws
    with torch.no_grad():
        values = ShapleyValueSampling(forward).attribute(
            (pixels, ids), baselines=(removed_pixels(pixels), ids_baseline), target=target,
            feature_mask=(pixel_features, token_features), n_samples=samples, perturbations_per_eval=64,
        )  # fmt: skip
    pixel_values, token_values = values  # (1, C, H, W) each pixel holds its patch's value; (1, L)
    flat_ids = pixel_features[0, 0].flatten()  # (H·W,)
    patches = torch.zeros(n_patches, dtype=pixel_values.dtype, device=pixels.device)
    patches = patches.index_put((flat_ids,), pixel_values[0, 0].flatten()).view(grid, grid)  # (grid, grid)
    tokens = token_values[0, positions].float()  # (L_real,)
    image_mass, text_mass = float(patches.abs().sum()), float(tokens.abs().sum())
    share = image_mass / (image_mass + text_mass) if image_mass + text_mass > 0 else 0.5
    return {"patches": patches.float().cpu(), "tokens": tokens.cpu(), "image_share": share, "text_share": 1 - share}
