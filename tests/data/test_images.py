from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import write_png
from PIL import Image

from vlfuse.data.images import decode_image_bytes, load_image, load_images
from vlfuse.errors import DataError


def test_load_png_resizes_to_square_uint8(tmp_path: Path) -> None:
    path = write_png(tmp_path / "red.png", (255, 0, 0), size=(30, 20))
    image = load_image(path, size=16, channels=3)
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8
    assert image[0].eq(255).all() and image[1:].eq(0).all()


def test_greyscale_and_rgb_conversion(tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.new("L", (8, 8), 128).save(grey)
    assert load_image(grey, size=8, channels=3).shape == (3, 8, 8)
    rgb = write_png(tmp_path / "white.png", (255, 255, 255))
    out = load_image(rgb, size=8, channels=1)
    assert out.shape == (1, 8, 8) and out.eq(255).all()


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(path)
    assert load_image(path, size=8, channels=3).eq(255).all()


def test_jpeg_and_bytes_decode_like_files(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(path, quality=95)
    from_file = load_image(path, size=16, channels=3)
    from_bytes = decode_image_bytes(path.read_bytes(), size=16, channels=3, source="upload")
    assert torch.equal(from_file, from_bytes)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"image file '.*nope\.png' does not exist"):
        load_image(tmp_path / "nope.png", size=8)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("hello, I am text")
    with pytest.raises(DataError, match=r"notes\.png' is not an image.*expected e\.g\. a PNG or JPEG"):
        load_image(path, size=8)


def test_truncated_image(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.effect_noise((64, 64), 50).convert("RGB").save(path)
    path.write_bytes(path.read_bytes()[:-2000])
    with pytest.raises(DataError, match=r"cut\.png' is truncated or corrupt"):
        load_image(path, size=8)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot be read"):
        load_image(tmp_path, size=8)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")  # as set globally by vlfuse
def test_decompression_bomb_limit_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_png(tmp_path / "big.png", size=(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(
        DataError, match=r"big\.png. (is 40x40 = 1,600 pixels, over|exceeds) the decompression-bomb limit"
    ):
        load_image(path, size=8)


def test_bad_bytes_name_their_source() -> None:
    with pytest.raises(DataError, match="'upload 3' is empty"):
        decode_image_bytes(b"", size=8, source="upload 3")
    with pytest.raises(DataError, match="'upload 4' is not an image"):
        decode_image_bytes(b"GIF? no", size=8, source="upload 4")


def test_bad_channels() -> None:
    with pytest.raises(DataError, match="channels must be 1"):
        decode_image_bytes(b"x", size=8, channels=2)


def test_load_images_collects_errors(tmp_path: Path) -> None:
    good = write_png(tmp_path / "a.png", (0, 0, 255))
    paths = [good, tmp_path / "missing.png", good] * 100  # enough to use the thread pool
    images, errors = load_images(paths, size=4, channels=3, workers=2)
    assert images.shape == (300, 3, 4, 4)
    assert sorted(errors) == list(range(1, 300, 3))
    assert "missing.png" in str(errors[1])
    assert images[0, 2].eq(255).all() and images[1].eq(0).all()
