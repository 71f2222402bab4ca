"""Retrieval metrics on hand-made embeddings: hits are any item with the query's key."""

import torch

from vlfuse.retrieval.metrics import first_hit_ranks, retrieval_metrics, zeroshot_accuracy


def test_first_hit_rank_counts_only_better_scoring_items():
    gallery = torch.eye(4)  # items 0..3 on the axes
    gallery_keys = torch.tensor([0, 1, 1, 2])
    queries = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.9, 0.0, 0.1, 0.0], [0.0, 0.0, 0.0, 1.0]])
    query_keys = torch.tensor([1, 1, 0])
    # query 0 hits item 1 at rank 1; query 1's best hit is item 2 (0.1), behind item 0 (0.9): rank 2;
    # query 2 (key 0) scores item 3 best, item 0 next among the ties at 0: rank 2
    assert first_hit_ranks(queries, gallery, query_keys, gallery_keys).tolist() == [1, 2, 2]
    assert first_hit_ranks(queries[:1], gallery, torch.tensor([9]), gallery_keys).tolist() == [5]  # no hit at all


def test_retrieval_metrics_both_directions():
    keys = torch.tensor([0, 0, 1, 2])
    emb = torch.eye(3)[keys]  # perfect embeddings: duplicates share a direction
    m = retrieval_metrics(emb, emb, keys, keys)
    assert m["t2i_r1"] == m["i2t_r1"] == m["mean_r1"] == 1.0 and m["t2i_median_rank"] == 1.0
    shuffled = torch.eye(3)[torch.tensor([1, 2, 0])][keys]  # every text points at another key
    bad = retrieval_metrics(emb, shuffled, keys, keys)
    assert bad["t2i_r1"] == 0.0 and bad["i2t_r1"] == 0.0 and bad["t2i_r5"] == 1.0


def test_zeroshot_accuracy_is_balanced_over_present_labels():
    m = zeroshot_accuracy(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 0, 2]), 3)
    assert m["accuracy"] == 0.75 and m["balanced_accuracy"] == 0.5 and m["samples"] == 4
