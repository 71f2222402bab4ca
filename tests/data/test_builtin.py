from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from vlfuse.config import DataConfig
from vlfuse.data.builtin import BUILTIN_DATASETS, load_builtin
from vlfuse.data.builtin import fashion_mnist as fm
from vlfuse.data.builtin import fashion_mnist_pairs as pairs
from vlfuse.errors import DataError

FM_CFG = DataConfig(name="fashion-mnist", image_size=28, channels=1)


def test_registry_names() -> None:
    assert set(BUILTIN_DATASETS) == {"easy-vqa", "fashion-mnist", "fashion-mnist-pairs", "marketplace", "tuxpaint",
                                     "moving-shapes"}
    with pytest.raises(DataError, match="unknown dataset 'mnist'; built-in datasets: easy-vqa"):
        load_builtin("mnist", "train", FM_CFG)
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_builtin("easy-vqa", "dev", FM_CFG)
    with pytest.raises(DataError, match="unknown key.*pairs_per_imag for dataset 'fashion-mnist-pairs'; valid keys"):
        load_builtin("fashion-mnist-pairs", "train", FM_CFG.model_copy(update={"options": {"pairs_per_imag": 2}}))


def test_easy_vqa_official_split() -> None:
    from easy_vqa import get_answers

    cfg = DataConfig(name="easy-vqa")
    train, test = load_builtin("easy-vqa", "train", cfg), load_builtin("easy-vqa", "test", cfg)
    assert (len(train), len(test)) == (38575, 9673)
    assert train.images.shape == (4000, 3, 64, 64) and test.images.shape == (1000, 3, 64, 64)
    assert train.label_names == get_answers() and len(train.label_names) == 13
    assert set(train.labels) <= set(train.label_names)
    assert train.texts[0] == ["what is the blue shape?"] and train.text_columns == ["question"]
    assert int(train.image_index.max()) == 3999 and train.image_sources[5] == "easy-vqa:train/5"
    assert train.images.float().std() > 10  # real pictures, not zeros


@pytest.fixture(scope="module")
def fashion() -> tuple:
    if not fm.DEFAULT_ROOT.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    return load_builtin("fashion-mnist", "train", FM_CFG), load_builtin("fashion-mnist", "test", FM_CFG)


def test_fashion_mnist_counts(fashion) -> None:
    train, test = fashion
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.texts is None and train.label_names == fm.CLASSES
    assert set(Counter(train.labels).values()) == {6000} and set(Counter(test.labels).values()) == {1000}
    assert train.images.dtype == torch.uint8 and train.images.max() == 255


def test_fashion_mnist_missing_folder(tmp_path: Path) -> None:
    cfg = FM_CFG.model_copy(update={"root": str(tmp_path)})
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist.*set data.root to a folder"):
        load_builtin("fashion-mnist", "train", cfg)


def test_fashion_mnist_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(20))
    with pytest.raises(DataError, match="is not an IDX images-idx3 file"):
        load_builtin("fashion-mnist", "test", FM_CFG.model_copy(update={"root": str(tmp_path)}))


def test_resize_batch() -> None:
    images = torch.full((3, 1, 28, 28), 200, dtype=torch.uint8)
    out = fm.resize_batch(images, 14, chunk=2)
    assert out.shape == (3, 1, 14, 14) and out.eq(200).all()


def test_pairs_balance_and_independence(fashion) -> None:
    train, _ = fashion
    classes = np.array([fm.CLASSES.index(n) for n in train.labels])
    image_rows, caption_classes, captions, match = pairs.make_pairs(classes, np.random.default_rng(0), 2)
    n = len(classes)
    assert len(captions) == 2 * n and match.sum() == n  # exactly balanced
    per_image = match.reshape(n, 2).sum(1)
    assert (per_image == 1).all()  # every image is paired both ways: the image alone says nothing
    true = classes[image_rows]
    assert (caption_classes[match] == true[match]).all() and (caption_classes[~match] != true[~match]).all()
    # caption class is uniform overall and carries no information about the label
    counts = np.bincount(caption_classes, minlength=10)
    assert np.abs(counts / len(captions) - 0.1).max() < 0.005
    match_rate = np.array([match[caption_classes == c].mean() for c in range(10)])
    assert np.abs(match_rate - 0.5).max() < 0.02
    # mismatch classes are uniform over the other nine
    offsets = (caption_classes[~match] - true[~match]) % 10
    assert np.abs(np.bincount(offsets, minlength=10)[1:] / (~match).sum() - 1 / 9).max() < 0.01
    assert len(set(captions)) > 150 and len(pairs.TEMPLATES) >= 8
    assert all(len(s) >= 2 for s in pairs.SYNONYMS)


def test_pairs_loader_is_deterministic(fashion) -> None:
    cfg = FM_CFG.model_copy(update={"name": "fashion-mnist-pairs", "options": {"pairs_per_image": 4}})
    a = load_builtin("fashion-mnist-pairs", "test", cfg)
    assert len(a) == 40000 and a.images.shape[0] == 10000 and a.label_names == ["mismatch", "match"]
    assert Counter(a.labels) == {"match": 20000, "mismatch": 20000} and a.text_columns == ["caption"]
    rng = np.random.default_rng([cfg.split_seed, 1])
    classes = np.array([fm.CLASSES.index(n) for n in fashion[1].labels])
    _, _, captions, _ = pairs.make_pairs(classes, rng, 4)
    assert [t[0] for t in a.texts] == captions  # same seed → same captions
    other = pairs.make_pairs(classes, np.random.default_rng([cfg.split_seed + 1, 1]), 4)[2]
    assert other != captions


def test_pairs_option_validation() -> None:
    cfg = FM_CFG.model_copy(update={"options": {"pairs_per_image": 0}})
    with pytest.raises(DataError, match="data.options.pairs_per_image must be a whole number >= 1, got 0"):
        pairs.pairs_per_image(cfg)
