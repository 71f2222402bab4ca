from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from vlfuse.config import DataConfig
from vlfuse.data.tables import check_columns, load_table_split, read_table
from vlfuse.errors import DataError

CFG = DataConfig(name="table", image_size=8)


def write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path)
    return path


def test_formats_give_identical_results(image_table: tuple[Path, pd.DataFrame]) -> None:
    root, df = image_table
    results = [load_table_split(write(df, root / f"t{ext}"), CFG) for ext in (".csv", ".jsonl", ".parquet")]
    results.append(load_table_split(df, CFG, base_dir=root))
    first = results[0]
    assert first.images.shape == (4, 3, 8, 8)  # 8 rows, 4 distinct images decoded once
    assert first.image_index.tolist() == [0, 1, 2, 0, 3, 1, 2, 3]
    assert first.texts[4] == ["NA"]  # not turned into a missing value
    assert first.source_rows == list(range(1, 9))
    assert first.image_sources[0] == str(root / "imgs" / "red.png")
    for other in results[1:]:
        assert torch.equal(first.images, other.images) and torch.equal(first.image_index, other.image_index)
        assert (first.texts, first.labels, first.source_rows) == (other.texts, other.labels, other.source_rows)
        assert first.image_sources == other.image_sources


def test_dataframe_paths_resolve_against_cwd(image_table, monkeypatch: pytest.MonkeyPatch) -> None:
    root, df = image_table
    monkeypatch.chdir(root)
    assert load_table_split(df, CFG).images.shape[0] == 4


def test_read_table_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"table file '.*absent\.csv' does not exist"):
        read_table(tmp_path / "absent.csv")
    with pytest.raises(DataError, match=r"unknown extension '\.xlsx'; expected one of .*csv.*jsonl.*parquet"):
        read_table(tmp_path / "data.xlsx")
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"'.*bad\.parquet' cannot be read as PARQUET"):
        read_table(tmp_path / "bad.parquet")
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(DataError, match=r"'.*bad\.jsonl' cannot be read as JSONL"):
        read_table(tmp_path / "bad.jsonl")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_table(tmp_path / "empty.csv")


def test_missing_columns_are_listed(image_table) -> None:
    _, df = image_table
    with pytest.raises(
        DataError, match=r"lacks the column\(s\) 'question', 'answer'; available columns: 'image', 'text'"
    ):
        check_columns(df, ["image", "question", "answer"], "t.csv")
    cfg = DataConfig(name="table", text_columns=["question"], image_size=8)
    with pytest.raises(DataError, match="'question'"):
        load_table_split(df, cfg)


def bad_rows_table(root: Path, df: pd.DataFrame) -> Path:
    (root / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    df = df.copy()
    df.loc[1, "image"] = "imgs/missing.png"  # row 2
    df.loc[3, "text"] = "   "  # row 4
    df.loc[5, "label"] = None  # row 6
    df.loc[6, "image"] = "imgs/broken.png"  # row 7
    return write(df, root / "bad.csv")


@pytest.mark.parametrize(
    ("drop_before", "row", "column", "message"),
    [
        (0, 2, "image", r"image file '.*missing\.png' does not exist"),
        (2, 4, "text", "empty text; expected a non-empty string"),
        (4, 6, "label", "missing label; expected a non-empty label value"),
        (6, 7, "image", r"broken\.png' is (not an image|truncated or corrupt)"),
    ],
)
def test_bad_rows_raise_naming_file_row_column(image_table, drop_before, row, column, message) -> None:
    root, df = image_table
    path = bad_rows_table(root, df)
    if drop_before:  # remove the earlier bad rows so this one is the first
        table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        fixed = pd.concat([df.iloc[:drop_before], table.iloc[drop_before:]], ignore_index=True)
        path = write(fixed, root / "bad2.csv")
    with pytest.raises(DataError, match=rf"bad2?\.csv, row {row}, column '{column}': .*{message}"):
        load_table_split(path, CFG)


def test_skip_lists_every_dropped_row(image_table) -> None:
    root, df = image_table
    path = bad_rows_table(root, df)
    raw = load_table_split(path, CFG.model_copy(update={"on_error": "skip"}))
    assert [(i.file, i.row, i.column) for i in raw.issues] == [
        (str(path), 2, "image"),
        (str(path), 4, "text"),
        (str(path), 6, "label"),
        (str(path), 7, "image"),
    ]
    assert "missing.png" in raw.issues[0].message and "row 2, column 'image'" in str(raw.issues[0])
    assert raw.source_rows == [1, 3, 5, 8]
    assert raw.labels == ["red", "blue", "white", "white"]
    assert raw.images.shape[0] == 3 and raw.image_index.tolist() == [0, 1, 2, 2]  # only images still used


def test_multiple_text_columns_and_multilabel(image_table) -> None:
    root, df = image_table
    df = df.assign(
        extra=[f"hint {i}" for i in range(8)],
        label=["red|warm", "green", "blue|cold", "red", "white"] * 1 + ["green|", "blue", "white| bright "],
    )
    cfg = DataConfig(name="table", text_columns=["text", "extra"], objective="multilabel", image_size=8)
    raw = load_table_split(df, cfg, base_dir=root)
    assert raw.texts[0] == ["What colour is it?", "hint 0"]
    assert raw.labels[0] == ["red", "warm"] and raw.labels[5] == ["green"] and raw.labels[7] == ["white", "bright"]


def test_limit_is_deterministic_and_keeps_images_together(image_table) -> None:
    root, df = image_table
    a = load_table_split(df, CFG, base_dir=root, limit=4, seed=3)
    b = load_table_split(df, CFG, base_dir=root, limit=4, seed=3)
    assert a.source_rows == b.source_rows and len(a) == 4
    assert a.images.shape[0] == 2  # two whole images with both their rows


def test_all_rows_bad(tmp_path: Path) -> None:
    df = pd.DataFrame({"image": ["a.png"], "text": ["x"], "label": ["y"]})
    with pytest.raises(DataError, match="all 1 rows are bad"):
        load_table_split(df, CFG.model_copy(update={"on_error": "skip"}), base_dir=tmp_path)


def _with_paths(root: Path, df: pd.DataFrame, cells: dict[int, str]) -> Path:
    """The table under root/tables/ (so its images sit one folder up), with some image cells replaced."""
    df = df.copy()
    df["image"] = ["../" + p for p in df["image"]]
    for row, cell in cells.items():
        df.loc[row, "image"] = cell
    (root / "tables").mkdir()
    return write(df, root / "tables" / "t.csv")


def test_image_paths_outside_the_data_root_are_refused_when_asked(image_table, caplog) -> None:
    root, df = image_table
    outside = root.parent / f"{root.name}-outside.png"
    outside.write_bytes((root / "imgs" / "red.png").read_bytes())
    df = df.copy()
    df.loc[2, "image"], df.loc[5, "image"] = f"../{outside.name}", "/etc/passwd"
    table = write(df, root / "t.csv")
    skip = CFG.model_copy(update={"on_error": "skip"})
    kept = load_table_split(table, skip)  # default: kept, with a warning (/etc/passwd is no image: skipped)
    assert len(kept) == 7 and str(outside) in kept.image_sources and [i.row for i in kept.issues] == [6]
    assert "2 image path(s) leave the data root" in caplog.text
    strict = skip.model_copy(update={"allow_outside_root": False})
    raw = load_table_split(table, strict)
    assert len(raw) == 6 and [i.row for i in raw.issues] == [3, 6]
    assert all("leaves the data root" in i.message for i in raw.issues)
    assert str(outside) not in raw.image_sources
    with pytest.raises(DataError, match=r"t\.csv, row 3, column 'image': image path '\.\./.*-outside\.png' leaves the "
                                        r"data root '.*'; expected a path inside it"):  # fmt: skip
        load_table_split(table, strict.model_copy(update={"on_error": "raise"}))


def test_the_table_folder_is_the_default_root(image_table, caplog) -> None:
    root, df = image_table
    table = _with_paths(root, df, {})  # every path is ../imgs/…: outside root/tables/
    with pytest.raises(DataError, match=r"row 1, column 'image': image path '\.\./imgs/red\.png' leaves the data root"):
        load_table_split(table, CFG.model_copy(update={"allow_outside_root": False}))
    assert len(load_table_split(table, CFG)) == 8
    assert "8 image path(s) leave the data root" in caplog.text
    assert len(load_table_split(table, CFG.model_copy(update={"root": str(root), "allow_outside_root": False}))) == 8


def test_a_symbolic_link_out_of_the_root_leaves_it(image_table) -> None:
    root, df = image_table
    (root / "tables").mkdir()
    (root / "tables" / "link.png").symlink_to(root / "imgs" / "red.png")
    df = df.assign(image=["link.png"] + list(df["image"][1:]))
    with pytest.raises(DataError, match="row 1, column 'image': image path 'link.png' leaves the data root"):
        load_table_split(write(df, root / "tables" / "t.csv"), CFG.model_copy(update={"allow_outside_root": False}))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_non_utf8_byte_names_its_row_and_is_skipped_under_skip(image_table, suffix) -> None:
    root, df = image_table
    path = write(df, root / f"t{suffix}")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"is it red?", b"is it r\xe9d?"))  # row 4 (latin-1 é)
    with pytest.raises(DataError, match=r"row 4, column 'text': holds bytes that are not valid utf-8 text .*"
                                        r"set data\.encoding"):  # fmt: skip
        load_table_split(path, CFG)
    raw = load_table_split(path, CFG.model_copy(update={"on_error": "skip"}))
    assert len(raw) == 7 and [(i.row, i.column) for i in raw.issues] == [(4, "text")]
    latin = load_table_split(path, CFG.model_copy(update={"encoding": "latin-1"}))
    assert len(latin) == 8 and latin.texts[3] == ["is it réd?"]


def test_an_unknown_encoding_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unknown text encoding 'utf-99'"):
        DataConfig(name="table", encoding="utf-99")
