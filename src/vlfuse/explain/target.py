"""One example made ready to explain: its model batch, raw pixels, real tokens and the output that is explained."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from vlfuse.objective import Objective
from vlfuse.types import Batch


@dataclass
class ExplainInput:
    """One row to explain.

    Attributes:
        batch: the model batch of that one row (normalised pixels (1, C, H, W), ids (1, L), mask (1, L)).
        raw_image: (C, H, W) uint8 as the model sees it (before normalisation), or None without an image.
        tokens: the real tokens of the text, in order (None without text).
        token_positions: their positions in `batch.text_ids` (L positions, padding excluded).
        target: the index into the run's probabilities that is explained (a label).
        label: that label's name.
        probability: the model's probability of it on the full input.
        probabilities: every label's probability on the full input, by name.
    """

    batch: Batch
    raw_image: Tensor | None
    tokens: list[str] | None
    token_positions: list[int]
    target: int
    label: str
    probability: float
    probabilities: dict[str, float]


def probabilities(model: nn.Module, objective: Objective, batch: Batch) -> Tensor:
    """(B, num_labels) probabilities of a batch (softmax, [1 − p, p] for binary, sigmoids for multilabel), in fp32."""
    return objective.probabilities(model(batch).float())


def scores(model: nn.Module, objective: Objective, batch: Batch) -> Tensor:
    """(B, num_labels) the evidence for each label before it is squashed into a probability, in fp32: the logits
    (binary: [−z, z]). Gradient attributions explain these, not probabilities — a confident prediction's probability
    is flat (its gradient vanishes), its logit is not (Grad-CAM uses the class score before the softmax)."""
    logits = model(batch).float()  # (B, K)
    return torch.cat([-logits, logits], dim=1) if objective.kind == "binary" else logits


def log_odds(model: nn.Module, objective: Objective, batch: Batch) -> Tensor:
    """(B, num_labels) log(p / (1 − p)) of each label, in fp32: in the probabilities' order, without their rounding
    (a confident row's probability is 1.0 and its log-probability 0.0 in fp32; its log-odds is still exact)."""
    if objective.kind != "multiclass":
        return scores(model, objective, batch)  # binary [−z, z] and multilabel z already are log-odds
    logits = model(batch).float()  # (B, K)
    others = logits.unsqueeze(1).expand(-1, logits.shape[1], -1)  # (B, K, K): row k holds every logit
    eye = torch.eye(logits.shape[1], dtype=torch.bool, device=logits.device)  # (K, K)
    return logits - others.masked_fill(eye, float("-inf")).logsumexp(-1)  # (B, K): z_k − log Σ_{j≠k} e^{z_j}


def removed_pixels(pixels: Tensor) -> Tensor:
    """What removed pixels become: each image's own mean colour (per channel), shape of `pixels` (S, C, H, W).

    For a thing on a background this is close to the background, so removing the thing's pixels removes the thing;
    a fixed grey would leave a grey silhouette with the thing's outline."""
    return pixels.mean(dim=(2, 3), keepdim=True).expand_as(pixels)  # (S, C, H, W)


def with_pixels(batch: Batch, pixels: Tensor) -> Batch:
    """The batch's one row repeated for each image of `pixels` (S, C, H, W): the text stays, the image changes."""
    return _repeated(batch, len(pixels), image=pixels)


def with_text(batch: Batch, text_ids: Tensor) -> Batch:
    """The batch's one row repeated for each row of `text_ids` (S, L): the image stays, the words change."""
    return _repeated(batch, len(text_ids), text_ids=text_ids)


def _repeated(batch: Batch, rows: int, *, image: Tensor | None = None, text_ids: Tensor | None = None) -> Batch:
    """The one row of `batch` as `rows` rows, with `image` (S, C, H, W) or `text_ids` (S, L) in place of its own."""
    if image is None and batch.image is not None:
        image = batch.image.expand(rows, -1, -1, -1)  # (S, C, H, W)
    if text_ids is None and batch.text_ids is not None:
        text_ids = batch.text_ids.expand(rows, -1)  # (S, L)
    text_mask = batch.text_mask.expand(rows, -1) if batch.text_mask is not None else None  # (S, L)
    return replace(batch, image=image, text_ids=text_ids, text_mask=text_mask, image_index=None,
                   image_present=None, text_present=None)  # fmt: skip


def unk_id(run) -> int:
    """The run's [UNK] id: what a removed token becomes (0 for a run without text, where no token is removed)."""
    return run.tokenizer.unk_id if run.tokenizer is not None else 0


def prepare_input(
    run, image: str | Path | Tensor | None, text: str | None, *, label: str | None = None
) -> ExplainInput:
    """Build the explained row of a classify-like run (`ClassifyRun` or a subclass) from one image and/or text.

    The explained output is `label` when given, else the most probable label.

    Raises:
        ValueError: no input, an input the model cannot do without is missing, or `label` is not one of the run's.
    """
    raw = run.load_pixels(image) if image is not None and run.model.image_encoder is not None else None  # (C, H, W)
    batch = run.make_batch([raw] if raw is not None else None, [text] if text is not None else None)
    device = next(run.model.parameters()).device
    batch = batch.to(device)
    with torch.inference_mode():
        probs = probabilities(run.model, run.objective, batch)[0].cpu()  # (num_labels,)
    if label is None:
        target = int(probs.argmax())
    elif label in run.label_names:
        target = run.label_names.index(label)
    else:
        raise ValueError(f"--label '{label}' is not one of the run's labels: {', '.join(run.label_names)}")
    tokens, positions = None, []
    if text is not None and batch.text_ids is not None:
        positions = torch.nonzero(batch.text_mask[0]).flatten().tolist()
        tokens = run.tokenizer.token_strings(batch.text_ids[0, positions].tolist())
    return ExplainInput(
        batch=batch, raw_image=raw, tokens=tokens, token_positions=positions, target=target,
        label=run.label_names[target], probability=float(probs[target]),
        probabilities={name: float(p) for name, p in zip(run.label_names, probs.tolist(), strict=True)},
    )  # fmt: skip
