"""The marketplace moderation benchmark: deterministic, its label rules hold on every row, every positive seed has
its benign confounders, and neither modality alone says anything about the multimodal labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from vlfuse.config import DataConfig
from vlfuse.data.builtin import fashion_mnist, load_builtin
from vlfuse.data.builtin.marketplace import (
    OPTIONS,
    REPLICA,
    kind_of,
    make_listings,
    mismatch_matrix,
    row_labels,
    stamp_mark,
)
from vlfuse.errors import DataError

CFG = DataConfig(name="marketplace", image_size=28, channels=1)
needs_fashion_mnist = pytest.mark.skipif(not fashion_mnist.installed(), reason="apt-get install dataset-fashion-mnist")


def lookup_auroc(labels: np.ndarray, key: np.ndarray) -> float:
    """AUROC of the best predictor that sees only `key`: the positive rate of each key value."""
    _, inverse = np.unique(key, return_inverse=True)
    rate = np.bincount(inverse, labels) / np.bincount(inverse)
    return float(roc_auc_score(labels, rate[inverse]))


def test_each_modality_alone_is_at_chance_on_the_multimodal_labels():
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 10, 60_000)
    rows = make_listings(classes, rng, OPTIONS)
    labels = row_labels(rows, classes)
    text_key = rows["named"] * 4 + rows["replica"] * 2 + rows["abusive"]  # everything the title says
    image_key = classes[rows["garment"]] * 2 + rows["marked"]  # everything the photo shows
    for name in ("mismatch", "prohibited"):
        y = np.array([name in row for row in labels], dtype=float)
        assert 0.1 < y.mean() < 0.3
        assert lookup_auroc(y, text_key) < 0.53 and lookup_auroc(y, image_key) < 0.53
    abusive = np.array(["abusive" in row for row in labels], dtype=float)
    assert lookup_auroc(abusive, text_key) == 1.0  # the text-only label is decided by the text


def test_every_positive_seed_has_two_confounders_that_flip_its_label():
    rng = np.random.default_rng(1)
    classes = rng.integers(0, 10, 5_000)
    rows = make_listings(classes, rng, OPTIONS)
    labels = row_labels(rows, classes)
    seeds = np.flatnonzero(rows["kind"] == 0)
    for kind, name in ((1, "mismatch"), (2, "prohibited")):
        positive = [i for i in seeds if name in labels[i]]
        confounders = np.flatnonzero(rows["kind"] == kind)
        assert len(confounders) == 2 * len(positive)
        assert not any(name in labels[i] for i in confounders)  # each flips the seed's label


def test_the_mismatch_matrix_names_every_item_equally_often_and_never_its_own_kind():
    q = mismatch_matrix()
    np.testing.assert_allclose(q.sum(0), 1, atol=1e-6)
    np.testing.assert_allclose(q.sum(1), 1, atol=1e-9)
    kinds = kind_of(np.arange(10))
    assert q[kinds[:, None] == kinds[None, :]].max() == 0


def test_the_brand_mark_changes_only_its_corner():
    garments = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    marked = stamp_mark(garments, np.array([0, 1, 2, 3]))
    changed = (marked != garments).any(1)  # (4, 28, 28)
    for i, (rows, cols) in enumerate([(slice(1, 8), slice(1, 8)), (slice(1, 8), slice(20, 27)),
                                      (slice(20, 27), slice(1, 8)), (slice(20, 27), slice(20, 27))]):  # fmt: skip
        outside = changed[i].clone()
        outside[rows, cols] = False
        assert not outside.any() and changed[i][rows, cols].any()


@needs_fashion_mnist
def test_the_split_is_deterministic_and_its_labels_follow_the_rules():
    a, b = load_builtin("marketplace", "test", CFG), load_builtin("marketplace", "test", CFG)
    assert a.texts == b.texts and a.labels == b.labels and torch.equal(a.images, b.images)
    assert a.label_names == ["mismatch", "prohibited", "abusive"] and len(a) > 10_000
    for i in range(0, len(a), 97):
        title, source = a.texts[i][0], a.image_sources[int(a.image_index[i])]
        replica = any(phrase in title for phrase in REPLICA)
        assert ("prohibited" in a.labels[i]) == (replica == source.endswith("+mark"))


def test_bad_options_are_named():
    with pytest.raises(DataError, match="data.options.mismatch_rate must be a number between 0 and 0.5"):
        load_builtin("marketplace", "test", CFG.model_copy(update={"options": {"mismatch_rate": 0.7}}))
    with pytest.raises(DataError, match="unknown key.*mismatch_rat for dataset 'marketplace'"):
        load_builtin("marketplace", "test", CFG.model_copy(update={"options": {"mismatch_rat": 0.1}}))
