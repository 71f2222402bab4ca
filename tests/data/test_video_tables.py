"""Tables of clips (`task: video` with `data.name: table`): video files and folders of frames decoded per row, a bad
clip reported by file, row and column — or skipped and listed under on_error: skip — never silently dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vlfuse.config import VideoDataConfig
from vlfuse.data.prepare import prepare_data
from vlfuse.data.video import write_video
from vlfuse.errors import DataError

pytest.importorskip("av", reason="video files need PyAV: pip install av")


def solid_clip(colour: tuple[int, int, int], frames: int = 6, side: int = 16) -> np.ndarray:
    clip = np.zeros((frames, side, side, 3), dtype=np.uint8)  # (T, H, W, C)
    clip[...] = colour
    clip[:, :, : side // 2] //= 2  # a darker left half, so frames are not blank
    return clip


@pytest.fixture
def clip_table(tmp_path):
    """A CSV of 5 rows: 3 mp4 / webm / gif clips, 1 folder of PNG frames, 1 corrupt mp4 (row 5)."""
    rows = []
    for k, (suffix, colour) in enumerate([(".mp4", (200, 30, 30)), (".webm", (30, 200, 30)), (".gif", (30, 30, 200))]):
        write_video(tmp_path / f"clip{k}{suffix}", solid_clip(colour), fps=10)
        rows.append({"video": f"clip{k}{suffix}", "text": f"clip number {k}", "label": "abc"[k]})
    frames = tmp_path / "frames"
    frames.mkdir()
    for k, frame in enumerate(solid_clip((200, 200, 30))):
        Image.fromarray(frame).save(frames / f"{k:02d}.png")
    rows.append({"video": "frames", "text": "a folder of frames", "label": "a"})
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    rows.append({"video": "broken.mp4", "text": "a broken clip", "label": "b"})
    path = tmp_path / "clips.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def config(path, **extra) -> VideoDataConfig:
    return VideoDataConfig(name="table", path=str(path), image_size=16, val_fraction=0.25,
                           video={"frames": 4, "decoded_frames": 6}, **extra)  # fmt: skip


def test_a_bad_clip_names_the_file_row_and_column(clip_table):
    with pytest.raises(DataError) as err:
        prepare_data(config(clip_table), seed=0)
    message = str(err.value)
    assert str(clip_table) in message and "row 5" in message and "column 'video'" in message and "broken.mp4" in message


def test_skip_keeps_every_good_clip_and_reports_the_bad_one(clip_table):
    data = prepare_data(config(clip_table, on_error="skip"), seed=0)
    assert [(i.row, i.column) for i in data.issues] == [(5, "video")] and "broken.mp4" in data.issues[0].message
    splits = [data.train, data.val]
    assert sum(len(s) for s in splits) == 4
    for split in splits:
        assert split.images.ndim == 5 and split.images.shape[1:] == (6, 3, 16, 16)  # (M, F, C, S, S) kept frames
    colours = {t: s.images[s.image_index[i]].float().mean((0, 2, 3)) for s in splits for i, t in enumerate(s.texts)}
    assert colours["clip number 0"].argmax() == 0 and colours["clip number 1"].argmax() == 1
    assert colours["clip number 2"].argmax() == 2 and colours["a folder of frames"][2] < 100  # yellow: little blue


def test_the_video_column_is_configurable(clip_table):
    pd.read_csv(clip_table).rename(columns={"video": "clip"}).to_csv(clip_table, index=False)
    with pytest.raises(DataError, match="lacks the column\\(s\\) 'video'"):
        prepare_data(config(clip_table, on_error="skip"), seed=0)
    data = prepare_data(config(clip_table, on_error="skip", video_column="clip"), seed=0)
    assert [(i.row, i.column) for i in data.issues] == [(5, "clip")]
