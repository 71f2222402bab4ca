"""Helpers for data tests: tiny PNG files and small image tables in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255)}


def write_png(path: Path, colour: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (12, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def image_table(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """A folder with imgs/{red,green,blue,white}.png and an 8-row table (relative paths, images shared)."""
    for name, colour in COLOURS.items():
        write_png(tmp_path / "imgs" / f"{name}.png", colour)
    rows = [
        ("imgs/red.png", "What colour is it?", "red"),
        ("imgs/green.png", "what COLOUR is this", "green"),
        ("imgs/blue.png", "Colour, please!", "blue"),
        ("imgs/red.png", "is it red?", "red"),
        ("imgs/white.png", "NA", "white"),
        ("imgs/green.png", "the colour?", "green"),
        ("imgs/blue.png", "which colour", "blue"),
        ("imgs/white.png", "colour of the image", "white"),
    ]
    return tmp_path, pd.DataFrame(rows, columns=["image", "text", "label"])
