"""Language ↔ vision retrieval: a contrastive dual encoder, an embedding index with search, zero-shot labels.

    vlfuse train configs/retrieval_easy_vqa.yaml --run-dir runs/ret     # task: retrieval
    vlfuse index runs/ret easy-vqa:test --out shapes.index
    vlfuse search runs/ret shapes.index "a blue triangle" -k 5
    vlfuse zeroshot runs/ret --on easy-vqa:test

Python: `RetrievalRun.load(path)`, `EmbeddingIndex`, `label_embeddings`, `contrastive_loss`.
"""

from vlfuse.retrieval.loss import contrastive_loss, positive_mask
from vlfuse.retrieval.run import RetrievalRun

__all__ = ["RetrievalRun", "contrastive_loss", "positive_mask"]
