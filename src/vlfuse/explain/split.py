"""Modality shares over a split: the exact two-player Shapley value of image vs text for every row, summarised."""

from __future__ import annotations

import statistics

import torch
from torch import nn

from vlfuse.data.loader import BatchLoader
from vlfuse.data.splits import SplitData, sample_rows
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.explain.modality import modality_shapley
from vlfuse.objective import Objective


def sampled(split: SplitData, limit: int | None, seed: int) -> SplitData:
    """The split, or `limit` of its rows drawn with `seed` (in row order)."""
    if limit is None or limit >= len(split.labels):
        return split
    return split.subset(sample_rows(len(split.labels), limit, seed))


def label_index(labels: torch.Tensor) -> torch.Tensor:
    """(B,) class ids of a batch's labels: as they are (multiclass, binary), the first label of multi-hot rows."""
    return labels.long() if labels.dim() == 1 else labels.argmax(-1)


@torch.inference_mode()
def modality_shares(
    model: nn.Module, objective: Objective, split: SplitData, preprocess: ImagePreprocessor, *,
    batch_size: int = 256, limit: int | None = None, seed: int = 0,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Per row (all rows, or `limit` rows drawn at random with `seed`, in row order): image_share, phi_image,
    phi_text of the predicted label, and the row's true label index (multiclass / binary) as `label`."""
    device = next(model.parameters()).device
    sub = sampled(split, limit, seed)
    n = len(sub.labels)
    loader = BatchLoader(sub, preprocess, batch_size=batch_size, shuffle=False, group_by_image=True)
    out = {k: torch.empty(n) for k in ("image_share", "phi_image", "phi_text")}
    out["label"] = torch.empty(n, dtype=torch.long)
    for batch in loader:
        values = modality_shapley(model, objective, batch.to(device))  # of each row's predicted label
        rows = batch.index.cpu()
        out["image_share"][rows] = values.image_share.cpu()
        out["phi_image"][rows] = values.image.cpu()
        out["phi_text"][rows] = values.text.cpu()
        out["label"][rows] = label_index(batch.label.cpu())
    return out


def summarize_shares(shares: torch.Tensor) -> dict[str, float | int]:
    """Mean, quartiles and the fraction of rows each modality dominates, for image shares (N,)."""
    values = shares.tolist()
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {
        "rows": len(values), "image_share_mean": statistics.fmean(values), "image_share_q1": q[0],
        "image_share_median": q[1], "image_share_q3": q[2], "text_share_mean": 1 - statistics.fmean(values),
        "image_dominated": sum(v > 0.5 for v in values) / len(values),
    }  # fmt: skip


def share_report(result: dict[str, torch.Tensor], label_names: list[str], groups: dict[str, str] | None = None) -> dict:
    """The split's share summary, overall and per group of true labels (`groups`: label → group; default each label
    its own group)."""
    groups = groups or {name: name for name in label_names}
    report = {"all": summarize_shares(result["image_share"]), "groups": {}}
    names = [groups.get(label_names[i], label_names[i]) for i in result["label"].tolist()]
    for group in dict.fromkeys(names):
        rows = torch.tensor([g == group for g in names])
        report["groups"][group] = summarize_shares(result["image_share"][rows])
    return report


def mm_shap_shares(
    model: nn.Module, objective: Objective, split: SplitData, preprocess: ImagePreprocessor, *, unk_id: int,
    rows: int = 100, samples: int = 10, seed: int = 0,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """MM-SHAP-style image shares (patches vs tokens, `token_patch_shapley`) of `rows` rows drawn with `seed`, for the
    predicted label; in the layout of `modality_shares` (image_share, label), so `share_report` summarises both."""
    from vlfuse.explain.modality import token_patch_shapley

    device = next(model.parameters()).device
    sub = sampled(split, rows, seed)
    n = len(sub.labels)
    loader = BatchLoader(sub, preprocess, batch_size=1, shuffle=False)
    out = {"image_share": torch.empty(n), "label": torch.empty(n, dtype=torch.long)}
    for batch in loader:
        batch = batch.to(device)
        row = int(batch.index[0])
        with torch.no_grad():
            target = int(objective.probabilities(model(batch).float()).argmax(-1)[0])
        shap = token_patch_shapley(model, objective, batch, target, unk_id=unk_id, samples=samples, seed=seed + row)
        out["image_share"][row] = shap["image_share"]
        out["label"][row] = label_index(batch.label.cpu())[0]
    return out
