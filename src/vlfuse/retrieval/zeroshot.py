"""Zero-shot labels: embed prompts built from label names and templates, give each image its nearest label.

A label's embedding is the mean of its prompts' unit vectors over the templates (renormalised), so several
phrasings vote. For the built-ins the default templates are the held-out caption templates: prompts the text tower
never saw in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vlfuse.data.captions import label_prompt
from vlfuse.data.text import TextTokenizer
from vlfuse.errors import DataError
from vlfuse.retrieval.embed import embed_texts
from vlfuse.retrieval.metrics import zeroshot_accuracy
from vlfuse.retrieval.model import DualEncoder


def label_embeddings(
    model: DualEncoder, tokenizer: TextTokenizer, labels: Sequence[str], templates: Sequence[str], dataset: str
) -> Tensor:
    """(K, E) unit vectors, one per label: the mean over templates of its prompt embeddings."""
    if not labels:
        raise DataError("zero-shot needs at least one label name")
    if not templates:
        raise DataError("zero-shot needs at least one prompt template")
    prompts = [label_prompt(dataset, label, t) for label in labels for t in templates]
    emb = embed_texts(model, tokenizer, prompts).view(len(labels), len(templates), -1)  # (K, T, E)
    return F.normalize(emb.mean(dim=1), dim=-1)  # (K, E)


def classify(image_emb: Tensor, label_emb: Tensor) -> tuple[Tensor, Tensor]:
    """(M,) predicted label ids and (M, K) cosine scores."""
    scores = image_emb @ label_emb.t()  # (M, K)
    return scores.argmax(dim=1), scores


def evaluate_zeroshot(
    image_emb: Tensor, image_keys: Sequence[str], label_emb: Tensor, labels: Sequence[str]
) -> dict[str, float]:
    """Accuracy of zero-shot labels for images whose true key is among `labels` (others are not scored).

    Raises:
        DataError: no image has a key among the labels.
    """
    slot = {label: i for i, label in enumerate(labels)}
    rows = [i for i, k in enumerate(image_keys) if k in slot]
    if not rows:
        raise DataError(f"no image is labelled with any of the labels {list(labels)[:10]}; nothing to score")
    target = torch.tensor([slot[image_keys[i]] for i in rows], dtype=torch.long)  # (N,)
    predicted, _ = classify(image_emb[rows], label_emb)  # (N,)
    return zeroshot_accuracy(predicted, target, len(labels))
