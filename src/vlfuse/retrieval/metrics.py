"""Retrieval metrics where a hit is any item whose key (what its caption describes) matches the query's.

recall@K: the share of queries with a hit among the top K. Median rank: the median, over queries, of the rank
(1-based) of the best-ranked hit; items scoring higher than it count, ties with it do not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

KS = (1, 5, 10)


def first_hit_ranks(queries: Tensor, gallery: Tensor, query_keys: Tensor, gallery_keys: Tensor,
                    chunk: int = 1024) -> Tensor:  # fmt: skip
    """(Q,) 1-based rank of the best-scoring gallery item with the query's key; a query without any has rank G + 1.

    Args:
        queries: (Q, E) unit vectors; gallery: (G, E) unit vectors.
        query_keys: (Q,) long; gallery_keys: (G,) long.
    """
    ranks = torch.empty(len(queries), dtype=torch.long)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        scores = q @ gallery.t()  # (q, G)
        hit = query_keys[start : start + chunk, None] == gallery_keys[None, :]  # (q, G)
        best = scores.masked_fill(~hit, float("-inf")).amax(dim=1, keepdim=True)  # (q, 1)
        rank = (scores > best).sum(dim=1) + 1  # (q,)
        rank[~hit.any(dim=1)] = len(gallery) + 1
        ranks[start : start + chunk] = rank
    return ranks


def rank_metrics(ranks: Tensor, prefix: str, ks: Sequence[int] = KS) -> dict[str, float]:
    out = {f"{prefix}_r{k}": float((ranks <= k).float().mean()) for k in ks}
    out[f"{prefix}_median_rank"] = float(ranks.float().median())
    return out


def retrieval_metrics(image_emb: Tensor, text_emb: Tensor, image_keys: Tensor, text_keys: Tensor) -> dict[str, float]:
    """recall@1/5/10 and median rank for text→image (t2i) and image→text (i2t), and their mean recall@1.

    Args:
        image_emb: (M, E) unit vectors of the gallery images; text_emb: (T, E) unit vectors of the captions.
        image_keys: (M,) long; text_keys: (T,) long.
    """
    metrics = rank_metrics(first_hit_ranks(text_emb, image_emb, text_keys, image_keys), "t2i")
    metrics |= rank_metrics(first_hit_ranks(image_emb, text_emb, image_keys, text_keys), "i2t")
    metrics["mean_r1"] = 0.5 * (metrics["t2i_r1"] + metrics["i2t_r1"])
    return metrics


def zeroshot_accuracy(predicted: Tensor, target: Tensor, num_labels: int) -> dict[str, float]:
    """Accuracy and balanced accuracy (mean per-label recall over the labels present) of label ids (N,)."""
    correct = (predicted == target).float()  # (N,)
    counts = torch.bincount(target, minlength=num_labels).float()  # (K,)
    hits = torch.bincount(target, weights=correct, minlength=num_labels)  # (K,)
    present = counts > 0
    return {
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float((hits[present] / counts[present]).mean()),
        "samples": int(len(target)),
    }
