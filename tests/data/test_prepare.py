from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import write_png

from vlfuse.config import DataConfig
from vlfuse.data.builtin.fashion_mnist import DEFAULT_ROOT
from vlfuse.data.labels import encode_labels
from vlfuse.data.prepare import prepare_data, prepare_inputs
from vlfuse.data.show import save_sample_grid, summarize
from vlfuse.errors import DataError


def image_ids(split) -> set[str]:
    return set(split.image_sources)


def test_easy_vqa_prepare() -> None:
    data = prepare_data(DataConfig(name="easy-vqa", val_fraction=0.1), seed=0)
    assert len(data.train) + len(data.val) == 38575 and len(data.test) == 9673
    assert abs(len(data.val) / 38575 - 0.1) < 0.01
    assert not image_ids(data.train) & image_ids(data.val)  # grouped by image
    assert data.train.images.shape[0] + data.val.images.shape[0] == 4000
    assert len(data.label_names) == 13 and data.objective == "multiclass" and data.tokenizer is not None
    assert data.train.token_ids.shape == (len(data.train), 32) and data.train.labels.dtype == torch.long
    assert data.train.texts[0].endswith("?") and data.issues == []
    again = prepare_data(DataConfig(name="easy-vqa", limit=3000), seed=5)
    assert len(again.train) + len(again.val) == 3000
    summary = summarize(again)
    assert summary["splits"]["test"]["rows"] == 9673 and summary["skipped_rows"] == 0
    assert sum(summary["splits"]["train"]["labels"].values()) == len(again.train)


@pytest.mark.skipif(not DEFAULT_ROOT.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_pairs_prepare(tmp_path: Path) -> None:
    cfg = DataConfig(name="fashion-mnist-pairs", objective="binary", image_size=28, channels=1, limit=2000)
    data = prepare_data(cfg, seed=0)
    assert len(data.train) + len(data.val) == 2000 and len(data.test) == 20000
    assert data.label_names == ["mismatch", "match"] and data.train.labels.dtype == torch.float32
    assert not image_ids(data.train) & image_ids(data.val)
    assert data.test.labels.mean().item() == 0.5
    path = save_sample_grid(data.val, data.label_names, tmp_path / "grid.png", n=6)
    assert path.stat().st_size > 1000


def table(root: Path, name: str, rows: list[tuple[str, str, str]]) -> Path:
    path = root / name
    pd.DataFrame(rows, columns=["image", "text", "label"]).to_csv(path, index=False)
    return path


@pytest.fixture
def tables(tmp_path: Path) -> tuple[Path, Path]:
    for i in range(12):
        write_png(tmp_path / "img" / f"{i}.png", (20 * i, 0, 255 - 20 * i))
    train = [
        (f"img/{i % 10}.png", f"question {i} about shape {i % 3}", ["cat", "dog", "bird"][i % 3]) for i in range(40)
    ]
    test = [("img/10.png", "question about a shape", "dog"), ("img/11.png", "another words", "fish")]
    return table(tmp_path, "train.csv", train), table(tmp_path, "test.csv", test)


def table_cfg(train: Path, test: Path | None = None, **kw) -> DataConfig:
    return DataConfig(name="table", path=str(train), test_path=None if test is None else str(test), image_size=8, **kw)


def test_table_prepare_and_unseen_test_label(tables) -> None:
    train, test = tables
    with pytest.raises(
        DataError,
        match=r"test\.csv, row 2, column 'label': label 'fish' was not seen in training; "
        r"known labels: 'bird', 'cat', 'dog'",
    ):
        prepare_data(table_cfg(train, test), seed=0)
    data = prepare_data(table_cfg(train, test, on_error="skip", val_fraction=0.2), seed=0)
    assert [(i.row, i.column) for i in data.issues] == [(2, "label")] and "fish" in data.issues[0].message
    assert len(data.test) == 1 and data.test.source_rows == [1]
    assert data.label_names == ["bird", "cat", "dog"]
    assert not image_ids(data.train) & image_ids(data.val) and len(data.val) == 8  # 2 of the 10 images
    # the tokenizer saw only training-split texts
    val_only = {w for t in data.val.texts for w in t.split()} - {w for t in data.train.texts for w in t.split()}
    vocab = data.tokenizer._tok.get_vocab()
    assert val_only and not (val_only & set(vocab))


def test_val_split_is_deterministic(tables) -> None:
    train, _ = tables
    a = prepare_data(table_cfg(train, split_seed=1), seed=0)
    b = prepare_data(table_cfg(train, split_seed=1), seed=99)
    c = prepare_data(table_cfg(train, split_seed=2), seed=0)
    assert a.val.source_rows == b.val.source_rows != c.val.source_rows


def test_binary_and_multilabel(tmp_path: Path, tables) -> None:
    train, _ = tables
    df = pd.read_csv(train)
    path = tmp_path / "two.csv"
    df.assign(label=["yes", "no"] * 20).to_csv(path, index=False)
    data = prepare_data(table_cfg(path, objective="binary"), seed=0)
    assert data.label_names == ["no", "yes"] and data.train.labels.dtype == torch.float32
    assert set(data.train.labels.tolist()) == {0.0, 1.0}
    with pytest.raises(
        DataError,
        match=r"train\.csv, column 'label': objective 'binary' needs exactly two distinct labels, "
        r"found 3: 'bird', 'cat', 'dog'",
    ):
        prepare_data(table_cfg(train, objective="binary"), seed=0)
    multi = tmp_path / "multi.csv"
    df.assign(label=["cat|small", "dog", "bird|small|flying", "dog|cat"] * 10).to_csv(multi, index=False)
    data = prepare_data(table_cfg(multi, objective="multilabel"), seed=0)
    assert data.label_names == ["bird", "cat", "dog", "flying", "small"]
    assert data.train.labels.shape == (len(data.train), 5) and data.train.labels.sum(1).min() >= 1


def test_encode_labels() -> None:
    assert encode_labels(["b", "a", "b"], ["a", "b"], "multiclass").tolist() == [1, 0, 1]
    assert encode_labels(["b", "a"], ["a", "b"], "binary").tolist() == [1.0, 0.0]
    assert encode_labels([["a", "c"], ["b"]], ["a", "b", "c"], "multilabel").tolist() == [[1, 0, 1], [0, 1, 0]]
    with pytest.raises(DataError, match=r"label 'z' at position 1 is not a known label; known labels: 'a', 'b'"):
        encode_labels(["a", "z"], ["a", "b"], "multiclass")


def test_subset_keeps_only_referenced_images(tables) -> None:
    data = prepare_data(table_cfg(tables[0]), seed=0)
    train = data.train
    rows = [i for i in range(len(train)) if train.image_index[i] in (train.image_index[0], train.image_index[5])]
    sub = train.subset(rows)
    assert sub.images.shape[0] == len({train.image_sources[int(train.image_index[r])] for r in rows})
    for new, old in enumerate(rows):
        assert torch.equal(sub.images[sub.image_index[new]], train.images[train.image_index[old]])
        assert torch.equal(sub.token_ids[new], train.token_ids[old]) and sub.texts[new] == train.texts[old]


def test_prepare_inputs_matches_training_encoding(tables) -> None:
    train_path, _ = tables
    cfg = table_cfg(train_path)
    data = prepare_data(cfg, seed=0)
    row = 3
    source = data.train.image_sources[int(data.train.image_index[row])]
    inputs = prepare_inputs([source, Path(source).read_bytes()], [data.train.texts[row]] * 2, data.tokenizer, cfg)
    expected = data.train.images[data.train.image_index[row]]
    assert torch.equal(inputs.images[0], expected) and torch.equal(inputs.images[1], expected)
    assert torch.equal(inputs.token_ids[0], data.train.token_ids[row]) and inputs.labels is None
    with pytest.raises(DataError, match="got 2 images but 1 texts"):
        prepare_inputs([source, source], ["a"], data.tokenizer, cfg)
    with pytest.raises(DataError, match="does not exist"):
        prepare_inputs(["/nonexistent.png"], None, None, cfg)


def test_reuse_tokenizer_and_labels(tables) -> None:
    train, test = tables
    first = prepare_data(table_cfg(train), seed=0)
    again = prepare_data(table_cfg(train), seed=0, tokenizer=first.tokenizer, label_names=first.label_names)
    assert again.tokenizer is first.tokenizer and torch.equal(again.val.token_ids, first.val.token_ids)
    with pytest.raises(DataError, match="label 'bird' was not seen in training"):
        prepare_data(table_cfg(train), seed=0, label_names=["cat", "dog"])


def test_config_errors(tables) -> None:
    with pytest.raises(DataError, match="data.path is required when data.name is 'table'"):
        prepare_data(DataConfig(name="table"), seed=0)
    with pytest.raises(DataError, match="unknown data.name 'cifar'; expected 'table' or one of easy-vqa"):
        prepare_data(DataConfig(name="cifar"), seed=0)
    with pytest.raises(DataError, match="data.path / data.test_path are for data.name 'table'"):
        prepare_data(DataConfig(name="easy-vqa", test_path=str(tables[1])), seed=0)
