"""Caption data: easy-VQA attributes from questions (checked against pixels), templates, tables."""

from __future__ import annotations

from collections import Counter, defaultdict

import pandas as pd
import pytest
from PIL import Image

from vlfuse.config import DataConfig
from vlfuse.data.builtin.easy_vqa import (
    COLORS,
    SHAPES,
    derive_easy_vqa_attributes,
    easy_vqa_attributes_with_issues,
    image_attributes_easy_vqa,
)
from vlfuse.data.captions import caption_templates, captioned_images, captioned_table, label_prompt
from vlfuse.errors import DataError


def test_every_template_kind_gives_the_right_fact():
    rows = [
        ("what shape is present?", "circle", 1),
        ("is there not a red shape in the image?", "no", 1),  # → red
        ("what is the blue shape?", "triangle", 2),  # → blue triangle
        ("what color is the rectangle?", "teal", 3),  # → teal rectangle
        ("is there a circle?", "no", 4),
        ("does the image not contain a triangle?", "yes", 4),  # → rectangle by elimination
        ("is a green shape present?", "yes", 4),
        ("is no yellow shape present?", "yes", 5),  # colour unknown, shape unknown
    ]
    texts, answers, ids = zip(*rows, strict=True)
    attrs, issues = derive_easy_vqa_attributes(texts, answers, ids, file="hand")
    assert issues == []
    assert attrs == {
        1: {"color": "red", "shape": "circle"},
        2: {"color": "blue", "shape": "triangle"},
        3: {"color": "teal", "shape": "rectangle"},
        4: {"color": "green", "shape": "rectangle"},
        5: {"color": None, "shape": None},
    }


def test_conflicts_and_unusable_questions_are_reported_not_dropped_silently():
    rows = [
        ("what color is the shape?", "red", 7),
        ("is there a red shape?", "no", 7),  # contradicts row 0
        ("what shape is present?", "circle", 8),
        ("what is the color of the triangle?", "blue", 8),  # says triangle, row 2 says circle
        ("how many shapes are there?", "one", 9),
        ("is there a green shape?", "maybe", 9),
    ]
    texts, answers, ids = zip(*rows, strict=True)
    attrs, issues = derive_easy_vqa_attributes(texts, answers, ids, file="hand")
    assert 7 not in attrs and 8 not in attrs
    by_row = {i.row: i for i in issues}
    assert set(by_row) == {1, 3, 4, 5}
    assert "image 7" in by_row[1].message and "'red'" in by_row[1].message
    assert "image 8" in by_row[3].message and "circle" in by_row[3].message
    assert "templates" in by_row[4].message and "'maybe'" in by_row[5].message
    assert all(i.file == "hand" and i.column == "question" for i in issues)


def test_real_easy_vqa_attributes_agree_with_the_pixels():
    """The shape is drawn in one flat colour: it is the image's second most common pixel value (the background
    is the first). Every image whose colour the questions give must show that colour's one RGB value."""
    import easy_vqa

    attrs, issues = easy_vqa_attributes_with_issues("test")
    assert issues == []
    assert sum(a["color"] is not None and a["shape"] is not None for a in attrs.values()) == 888
    assert len(image_attributes_easy_vqa("test")) == 888
    paths = easy_vqa.get_test_image_paths()
    rgb_of: dict[str, Counter] = defaultdict(Counter)
    for image_id, a in attrs.items():
        if a["color"] is None:
            continue
        colours = sorted(Image.open(paths[image_id]).convert("RGB").getcolors(4096), reverse=True)
        rgb_of[a["color"]][colours[1][1]] += 1
    assert set(rgb_of) == set(COLORS)
    for colour, counts in rgb_of.items():
        assert len(counts) == 1, f"{colour} images show several shape colours: {counts}"
    assert len({next(iter(c)) for c in rgb_of.values()}) == len(COLORS)  # distinct RGB per colour name


def test_easy_vqa_captions_use_the_attributes():
    data = captioned_images("easy-vqa", "test", DataConfig(image_size=16))
    assert len(data) == 888 and tuple(data.images.shape) == (888, 3, 16, 16)
    assert len(set(data.keys)) == len(COLORS) * len(SHAPES)
    for caps, key, attrs in zip(data.captions, data.keys, data.attributes, strict=True):
        assert key == f"{attrs['color']} {attrs['shape']}" and caps[0] == f"a {key}"
        assert len(caps) == len(caption_templates("easy-vqa", "train"))
        assert all(attrs["color"] in c and attrs["shape"] in c for c in caps)


def test_fashion_mnist_captions_and_template_split():
    train, heldout = caption_templates("fashion-mnist", "train"), caption_templates("fashion-mnist", "heldout")
    assert not set(train) & set(heldout)
    data = captioned_images("fashion-mnist", "test", DataConfig(image_size=28, channels=1), captions_per_image=2)
    assert len(data) == 10_000 and data.images.shape[1] == 1
    assert all(len(c) == 2 and len(set(c)) == 2 for c in data.captions)
    prompts = {t.format(a="X", n="X") for t in train}
    for caps, key in zip(data.captions[:200], data.keys[:200], strict=True):
        assert all(key.lower() in c for c in caps)
        assert all(c.replace(("an " if key[0] in "AEIOU" else "a ") + key.lower(), "X") in prompts
                   or c.replace(key.lower(), "X") in prompts for c in caps)  # fmt: skip
    held = captioned_images("fashion-mnist", "test", DataConfig(image_size=28, channels=1), templates="heldout")
    assert not {c for cs in held.captions[:50] for c in cs} & {c for cs in data.captions for c in cs}


def test_label_prompts():
    assert label_prompt("easy-vqa", "red circle", "a photo of a {color} {shape}") == "a photo of a red circle"
    assert label_prompt("fashion-mnist", "Ankle boot", "a photo of {a}") == "a photo of an ankle boot"
    assert label_prompt("table", "cat", "a photo of a {}") == "a photo of a cat"
    assert label_prompt("fashion-mnist", "Bag", "{} on a shelf") == "Bag on a shelf"
    with pytest.raises(DataError, match="needs an easy-VQA label '<color> <shape>'"):
        label_prompt("easy-vqa", "circle", "{color} {shape}")
    with pytest.raises(DataError, match="has no slot for the label"):
        label_prompt("fashion-mnist", "Bag", "a photo")


def test_caption_table_groups_captions_by_image(image_table):
    folder, df = image_table
    df = df.rename(columns={"text": "caption"})
    df.to_csv(folder / "caps.csv", index=False)
    data = captioned_table(folder / "caps.csv", DataConfig(image_size=8))
    assert len(data) == 4 and data.images.shape == (4, 3, 8, 8)
    red = data.image_sources.index(str(folder / "imgs" / "red.png"))
    assert data.captions[red] == ["What colour is it?", "is it red?"]
    assert data.keys[red] == "what colour is it"


def test_caption_table_bad_row_names_file_row_and_column(image_table):
    folder, df = image_table
    df = df.rename(columns={"text": "caption"})
    df.loc[2, "caption"] = ""
    df.to_csv(folder / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad.csv, row 3, column 'caption': empty text"):
        captioned_table(folder / "bad.csv", DataConfig(image_size=8))
    frame = pd.read_csv(folder / "bad.csv", keep_default_na=False, na_values=[""])
    skipped = captioned_table(frame, DataConfig(image_size=8, on_error="skip"), base_dir=folder)
    assert [i.row for i in skipped.issues] == [3] and len(skipped) == 4
    assert sum(len(c) for c in skipped.captions) == 7
