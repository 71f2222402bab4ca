"""The Tux Paint stamps loader: captions from the first line of NAME.txt, the category from the folder, transparency
composited onto white and the object padded (not stretched) to a square, SVGs rendered or reported as skipped with
the reason, a split fixed by file path; and the installed package as a real dataset."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlfuse.config import DataConfig
from vlfuse.data.builtin import tuxpaint
from vlfuse.data.captions import captioned_images
from vlfuse.errors import DataError

INSTALLED = tuxpaint.DEFAULT_ROOT
needs_stamps = pytest.mark.skipif(not tuxpaint.installed(INSTALLED),
                                  reason=f"Tux Paint's stamps are not installed: {tuxpaint.INSTALL}")  # fmt: skip


def stamp(root: Path, relative: str, caption: str, image: Image.Image | str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, str):
        path.write_text(image)
    else:
        image.save(path)
    path.with_suffix(".txt").write_text(f"{caption}\nfr.utf8=Une traduction.\n")
    return path


def test_captions_categories_transparency_and_padding(tmp_path):
    wide = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    wide.paste((200, 0, 0, 255), (10, 5, 30, 15))  # a red box inside a transparent wide canvas
    stamp(tmp_path, "animals/birds/crow.png", "A crow.", wide)
    stamp(tmp_path, "vehicles/truck.png", "A pickup truck.", Image.new("RGB", (8, 8), (0, 0, 255)))
    stamp(tmp_path, "symbols/sign.png", "A sign.", Image.new("RGB", (8, 8)))  # left out by default
    (tmp_path / "animals" / "nocaption.png").write_bytes(b"")  # no NAME.txt: not a stamp
    cfg = DataConfig(name="tuxpaint", root=str(tmp_path), image_size=16)
    found = {s.relative: s for split in ("train", "test") for s in tuxpaint.stamps(split, cfg)}
    assert set(found) == {"animals/birds/crow.png", "vehicles/truck.png"}
    assert found["animals/birds/crow.png"].caption == "A crow." and found["vehicles/truck.png"].category == "vehicles"
    crow = tuxpaint.decode_stamp(tmp_path / "animals/birds/crow.png", 16).numpy()  # (3, 16, 16)
    assert crow.shape == (3, 16, 16)
    assert (crow[:, 0, :] == 255).all() and (crow[:, :, 0] == 255).all()  # padding and transparency: white
    centre = crow[:, 8, 8]
    assert centre[0] > 150 and centre[1] < 60  # the red box, not stretched away
    assert tuxpaint.object_phrase("A pickup truck.") == "pickup truck"
    assert tuxpaint.head_noun("A pickup truck.") == "truck"
    assert tuxpaint.head_noun("A spider playing soccer.") == "spider"


def _in_train(stem: str, suffix: str) -> str:
    """A file name below food/ that the fixed split puts in train."""
    names = (f"food/{stem}{i}{suffix}" for i in range(100))
    return next(name for name in names if tuxpaint.split_of(name) == "train")


def test_a_bad_stamp_raises_naming_the_file_or_is_skipped_and_reported(tmp_path):
    stamp(tmp_path, _in_train("apple", ".png"), "An apple.", Image.new("RGB", (8, 8), (0, 200, 0)))
    broken = stamp(tmp_path, _in_train("broken", ".svg"), "A broken drawing.", "<svg this is not svg")
    torn = tmp_path / _in_train("torn", ".png")
    torn.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    torn.with_suffix(".txt").write_text("A torn file.\n")
    with pytest.raises(DataError, match=r"tuxpaint: '.*(broken|torn)\d*\.(svg|png)'"):
        tuxpaint.load("train", DataConfig(name="tuxpaint", root=str(tmp_path), image_size=16))
    raw = tuxpaint.load("train", DataConfig(name="tuxpaint", root=str(tmp_path), image_size=16, on_error="skip"))
    assert raw.texts == [["An apple."]] and raw.labels == ["food"]
    assert {i.file for i in raw.issues} == {str(broken), str(torn)}
    assert all(i.column == "image" and i.message for i in raw.issues)


def test_a_missing_folder_names_the_install_command(tmp_path):
    with pytest.raises(DataError, match="apt-get install tuxpaint-stamps-default"):
        tuxpaint.load("train", DataConfig(name="tuxpaint", root=str(tmp_path / "nowhere")))


@needs_stamps
def test_the_installed_stamps_as_captioned_real_photos():
    cfg = DataConfig(name="tuxpaint", image_size=32, on_error="skip")
    train, test = captioned_images("tuxpaint", "train", cfg), captioned_images("tuxpaint", "test", cfg)
    assert len(train) > 400 and 80 < len(test) < 250  # ~20 % of ~770 stamps, fixed by path
    assert not set(train.image_sources) & set(test.image_sources)
    assert {a["category"] for a in train.attributes} <= set(tuxpaint.CATEGORIES) and len(train.attributes[0]) == 4
    assert all(c[0] == k for c, k in zip(train.captions, train.keys, strict=True))
    svgs = [s for s in train.image_sources + test.image_sources if s.endswith(".svg")]
    assert len(svgs) > 150  # drawings are rendered, not dropped
    skipped = [i for i in train.issues + test.issues]
    assert all(i.file.endswith(".svg") and "resvg" in i.message for i in skipped)  # each with its reason
    assert np.asarray(train.images[0]).dtype == np.uint8 and train.images.shape[1:] == (3, 32, 32)
