"""Safe, memory-bounded video decoding with PyAV: a clip (video file, its bytes, or a folder of frame images) → uint8
(frames, C, size, size); many clips with threads; and `write_video` for tests, examples and `vlfuse data show`.

Sampling is by presentation time (pts), so variable frame rates are timed right; a timestamp t takes the frame shown
at t, the last with pts ≤ t (the first, for t before it):
- `fps=None`: `frames` timestamps at the centres of `frames` equal segments of the duration: uniform over the clip.
- `fps=f`: `frames` timestamps 1/f s apart, a window centred in the clip; past the end of a shorter clip the last
  frame, before its start the first.
- Unknown duration: frames are timed by index at the stream's rate, counted from the header (else the packets).
- A folder of frame images (png/jpg/jpeg/bmp/webp in natural order of name, `f2` before `f10`): the same rules with
  the images at `FOLDER_FPS` frames/s; only the picked images are decoded (`vlfuse.data.pixels`).
Every output frame is a real decoded frame, repeated where timestamps share one: short clips give no zeros.

Memory: each picked frame is converted and resized as it is decoded, and decoding stops once the last timestamp is
passed, so the peak is the output plus a few decoded frames whatever the clip's length. Safety: `VideoLimits` are
checked on the header and while decoding; only the mp4/mov, matroska/webm, avi and gif demuxers may open a clip (no
playlists or concat lists reading other files) and a path is never parsed as a URL. A truncated clip decodes what it
has (a warning; its last frame fills the rest); one with no decodable frame is an error, as is every other failure:
a `DataError` naming the clip.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from vlfuse.atomic import atomic_write
from vlfuse.data.pixels import CROP_FRACTION, check_args, decode_pixels
from vlfuse.errors import DataError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif")
FRAME_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # images in a folder-of-frames clip
FOLDER_FPS = 25.0  # frame rate assumed for a folder of frame images (and for a stream that declares none)
_DEMUXERS = "mov,matroska,avi,gif"  # ffmpeg demuxers allowed to open a clip
_EPS = 1e-6  # seconds: a frame at t ± this is the one shown at t
_EXPECTED = "expected a video file such as MP4, WebM, AVI or GIF"


@dataclass(frozen=True)
class VideoLimits:
    """Clips over any of these are refused (a `DataError`) before they can cost much time or memory."""

    max_file_bytes: int = 512 * 2**20  # refuse bigger files before opening
    max_side: int = 4096  # refuse streams wider or taller than this (pixels)
    max_duration: float = 600.0  # seconds; refuse longer clips
    max_frames: int = 36_000  # refuse streams with more frames than this (declared or counted while decoding)


def limits_of(settings: Any) -> VideoLimits:
    """`VideoLimits` from a config's video section (`max_file_mb`, `max_side`, `max_duration`, `max_frames`)."""
    return VideoLimits(max_file_bytes=int(settings.max_file_mb * 2**20), max_side=settings.max_side,
                       max_duration=settings.max_duration, max_frames=settings.max_frames)  # fmt: skip


def _over(source: str, what: str, field: str, limit: float) -> DataError:
    return DataError(f"video '{source}' {what}, over the limit of {limit:,} (VideoLimits.{field}); expected a smaller, "
                     "shorter clip")  # fmt: skip


def _import_av() -> Any:
    from vlfuse.pretrained import pip_command, require_module

    require_module("av", pip_command("av"), "video decoding and writing (vlfuse.data.video)")
    import av

    return av


def _check_args(frames: int, size: int, channels: int, fps: float | None, fit: str) -> None:
    check_args(size, channels)
    if frames < 1:
        raise DataError(f"video frames must be a positive number of frames per clip, got {frames}")
    if fps is not None and not fps > 0:
        raise DataError(f"video fps must be a positive number of frames per second (or None), got {fps}")
    if fit not in ("stretch", "crop"):
        raise DataError(f"video fit {fit!r} is unknown; expected stretch or crop")


def _targets(start: float, duration: float, frames: int, fps: float | None) -> list[float]:
    """The sampling timestamps (seconds, ascending); see the module docstring."""
    steps = np.arange(frames, dtype=np.float64)
    if fps is None:
        return (start + (steps + 0.5) * duration / frames).tolist()
    return (start + duration / 2 + (steps - (frames - 1) / 2) / fps).tolist()


def _pick(timed: Iterable[tuple[float, Any]], targets: list[float], convert: Callable[[Any], np.ndarray],
          out: np.ndarray) -> tuple[int, float | None]:  # fmt: skip
    """Fill out[i] with the converted item shown at targets[i], consuming (time, item) pairs only until the last
    target is passed. Returns how many items it saw and, where they ran out first, the last one's time (else None)."""
    filled, seen, last, time = 0, 0, None, None
    done: tuple[Any, np.ndarray] | None = None  # the last conversion: an item shared by several targets converts once

    def put(item: Any) -> None:
        nonlocal done, filled
        if done is None or done[0] is not item:
            done = (item, convert(item))
        out[filled] = done[1]
        filled += 1

    for time, item in timed:
        seen += 1
        while filled < len(targets) and targets[filled] < time - _EPS:
            put(item if last is None else last)
        if filled == len(targets):
            return seen, None
        last = item
    while filled < len(targets) and last is not None:  # past the end: the last frame
        put(last)
    return seen, time


def _convert(frame: Any, size: int, channels: int, fit: str) -> np.ndarray:
    """One decoded av.VideoFrame → (C, size, size) uint8, scaled by swscale straight from its YUV planes."""
    fmt = "gray" if channels == 1 else "rgb24"
    if fit == "crop":  # as images' crop: shorter side to size / 0.875, then the centre
        scale = size / CROP_FRACTION / min(frame.width, frame.height)
        width, height = max(size, round(frame.width * scale)), max(size, round(frame.height * scale))
        array = frame.to_ndarray(format=fmt, width=width, height=height, interpolation="BICUBIC")
        top, left = (height - size) // 2, (width - size) // 2
        array = array[top : top + size, left : left + size]  # (S, S) or (S, S, 3)
    else:
        array = frame.to_ndarray(format=fmt, width=size, height=size, interpolation="BILINEAR")
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # (S, S, C) -> (C, S, S)


def _open(av: Any, fp: str | BinaryIO, source: str) -> Any:
    if isinstance(fp, str):  # "file:" so that ffmpeg never reads the path as a URL or protocol ("concat:", "http:")
        fp, options = "file:" + os.path.abspath(fp), {"format_whitelist": _DEMUXERS, "protocol_whitelist": "file"}
    else:
        fp.seek(0)
        options = {"format_whitelist": _DEMUXERS}
    try:
        return av.open(fp, mode="r", options=options)
    except (av.error.FFmpegError, OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        raise DataError(f"'{source}' cannot be decoded as a video ({reason}); {_EXPECTED}") from None


def _frames(av: Any, container: Any, stream: Any, source: str, limits: VideoLimits,
            timing: Callable[[int, Any], float]) -> Iterator[tuple[float, Any]]:  # fmt: skip
    """Decoded frames with their times, checked against the limits; a decoding error after some frames ends the clip
    (a warning)."""
    count = 0
    try:
        for frame in container.decode(stream):
            count += 1
            if count > limits.max_frames:
                raise _over(source, f"has more than {limits.max_frames:,} frames", "max_frames", limits.max_frames)
            if max(frame.width, frame.height) > limits.max_side:
                raise _over(source, f"has a {frame.width}x{frame.height} frame", "max_side", limits.max_side)
            yield timing(count - 1, frame), frame
    except (av.error.FFmpegError, OSError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        if count == 0:
            raise DataError(f"video '{source}' has no decodable frame ({reason}); {_EXPECTED}") from None
        log.warning("video '%s' is corrupt or truncated after %d frames (%s); its last frame fills the rest", source,
                    count, reason)  # fmt: skip


def _video_stream(container: Any, source: str, limits: VideoLimits) -> Any:
    """The first video stream, its header checked against the side and frame-count limits."""
    if not container.streams:
        raise DataError(f"'{source}' cannot be decoded as a video (no streams found: truncated?); {_EXPECTED}")
    if not container.streams.video:
        kinds = " and ".join(sorted({s.type for s in container.streams}))
        raise DataError(f"'{source}' has no video stream (only {kinds}); {_EXPECTED}")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # a damaged header (e.g. a bad 'hdlr' box) leaves the stream without a decoder
        raise DataError(f"'{source}' cannot be decoded as a video (its video stream has no decoder: corrupt header?); "
                        f"{_EXPECTED}")  # fmt: skip
    width, height = stream.codec_context.width, stream.codec_context.height
    if max(width, height) > limits.max_side:
        raise _over(source, f"is {width}x{height} pixels", "max_side", limits.max_side)
    if stream.frames > limits.max_frames:
        raise _over(source, f"has {stream.frames:,} frames", "max_frames", limits.max_frames)
    return stream


def _read_container(fp: str | BinaryIO, source: str, frames: int, size: int, channels: int, fps: float | None,
                    limits: VideoLimits, fit: str) -> np.ndarray:  # fmt: skip
    av = _import_av()
    container = _open(av, fp, source)
    try:
        stream = _video_stream(container, source, limits)
        tb, rate = stream.time_base, float(stream.average_rate or stream.guessed_rate or FOLDER_FPS)
        declared = stream.frames
        by_index = False
        if stream.duration and tb:
            start, duration = float((stream.start_time or 0) * tb), float(stream.duration * tb)
        elif container.duration:
            start, duration = (container.start_time or 0) / av.time_base, container.duration / av.time_base
        else:  # no duration: time the frames by index, counted in the header, else by their packets (not decoded)
            by_index, start, count = True, 0.0, stream.frames
            if not count:
                count = sum(1 for packet in container.demux(stream) if packet.size)
                if count > limits.max_frames:
                    raise _over(source, f"has {count:,} frames", "max_frames", limits.max_frames)
                container.close()
                container = _open(av, fp, source)  # from the start again
                stream = _video_stream(container, source, limits)
            duration = count / rate
        if duration > limits.max_duration:
            raise _over(source, f"lasts {duration:.1f} s", "max_duration", limits.max_duration)

        def timing(k: int, frame: Any) -> float:  # by pts; by index without a duration, or without a pts (rare)
            return float(frame.pts * tb) if frame.pts is not None and tb and not by_index else start + k / rate

        out = np.empty((frames, channels, size, size), dtype=np.uint8)  # (T, C, S, S)
        with closing(_frames(av, container, stream, source, limits, timing)) as decoded:
            seen, ended_at = _pick(decoded, _targets(start, duration, frames, fps),
                                   lambda frame: _convert(frame, size, channels, fit), out)  # fmt: skip
    finally:
        container.close()
    if seen == 0:
        raise DataError(f"video '{source}' has no decodable frame; {_EXPECTED}")
    if ended_at is not None and (ended_at + 2 / rate < start + duration or seen < declared - 1):
        of = f"{duration:.2f} s" + (f", {declared} frames" if declared else "")
        log.warning("video '%s' ends early (truncated?): %d frames, to %.2f s, of a declared %s; its last frame fills "
                    "the rest", source, seen, ended_at - start, of)  # fmt: skip
    return out


def _natural(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name.lower())]


def _read_folder(folder: Path, frames: int, size: int, channels: int, fps: float | None, limits: VideoLimits,
                 fit: str) -> np.ndarray:  # fmt: skip
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()), key=_natural)
    if not files:
        raise DataError(f"video folder '{folder}' holds no frame images; expected at least one "
                        f"{'/'.join(s[1:] for s in FRAME_SUFFIXES)} file")  # fmt: skip
    if len(files) > limits.max_frames:
        raise _over(str(folder), f"has {len(files):,} frame images", "max_frames", limits.max_frames)
    out = np.empty((frames, channels, size, size), dtype=np.uint8)  # (T, C, S, S)
    targets = _targets(0.0, len(files) / FOLDER_FPS, frames, fps)
    timed = ((k / FOLDER_FPS, file) for k, file in enumerate(files))
    _pick(timed, targets, lambda file: decode_pixels(str(file), str(file), size, channels, fit), out)
    return out


def read_video(
    source: str | Path | bytes, *, frames: int, size: int, channels: int = 3, fps: float | None = None,
    limits: VideoLimits = VideoLimits(), name: str | None = None, fit: str = "stretch",
) -> torch.Tensor:  # fmt: skip
    """One clip (a video file, encoded bytes, or a folder of frame images) → (frames, channels, size, size) uint8.

    Args:
        source: a video file, a folder of frame images, or a video file's bytes.
        frames: how many frames to sample (which: the module docstring); size: the output side in pixels.
        channels: 3 for RGB, 1 for greyscale.
        fps: None spreads the frames over the whole clip; a rate takes them 1/fps s apart, centred in the clip.
        limits: clips over these are refused; name: the clip in error messages (default: the path, or "<bytes>").
        fit: "stretch" resizes the whole frame to the square; "crop" keeps the aspect and crops the centre.

    Raises:
        DataError: bad arguments; a clip missing, empty, over a limit, not a video, without video or decodable frame.
        MissingPackageError: PyAV (`av`) is not installed.
    """
    _check_args(frames, size, channels, fps, fit)
    if isinstance(source, bytes | bytearray | memoryview):
        label = name or "<bytes>"
        nbytes = len(source)
        fp: str | BinaryIO = io.BytesIO(source)
    else:
        path = Path(source)
        label = name or str(path)
        if path.is_dir():
            return torch.from_numpy(_read_folder(path, frames, size, channels, fps, limits, fit))
        try:
            nbytes = path.stat().st_size
        except FileNotFoundError:
            raise DataError(f"video '{label}' does not exist; expected a video file or a folder of frames") from None
        except OSError as err:
            raise DataError(f"video file '{label}' cannot be read ({err.strerror}); expected a readable file") from None
        fp = str(path)
    if nbytes == 0:
        raise DataError(f"video '{label}' is empty (0 bytes); {_EXPECTED}")
    if nbytes > limits.max_file_bytes:
        raise _over(label, f"is {nbytes:,} bytes", "max_file_bytes", limits.max_file_bytes)
    return torch.from_numpy(_read_container(fp, label, frames, size, channels, fps, limits, fit))


def load_videos(paths: Sequence[str | Path], *, frames: int, size: int, channels: int = 3, fps: float | None = None,
                limits: VideoLimits = VideoLimits(), workers: int | None = None, fit: str = "stretch"
                ) -> tuple[torch.Tensor, dict[int, DataError]]:  # fmt: skip
    """Decode many clips with a thread pool (PyAV releases the GIL while decoding).

    Returns:
        videos: (M, frames, C, size, size) uint8, one per path; zeros where decoding failed.
        errors: position in `paths` → the DataError for each clip that could not be decoded.
    """
    _check_args(frames, size, channels, fps, fit)
    if any(not Path(p).is_dir() for p in paths):
        _import_av()  # a missing PyAV is one error for all, not one per clip
    videos = torch.zeros((len(paths), frames, channels, size, size), dtype=torch.uint8)  # (M, T, C, S, S)
    errors: dict[int, DataError] = {}

    def work(i: int) -> None:
        try:
            videos[i] = read_video(paths[i], frames=frames, size=size, channels=channels, fps=fps, limits=limits,
                                   fit=fit)  # fmt: skip
        except DataError as err:
            errors[i] = err

    with ThreadPoolExecutor(max_workers=max(1, min(workers or (os.cpu_count() or 1), len(paths)))) as pool:
        list(pool.map(work, range(len(paths))))
    if errors:
        log.debug("%d of %d clips could not be decoded", len(errors), len(paths))
    return videos, errors


# suffix → (container format, codec, pixel format, codec options): near-lossless, and what browsers play where they can
_H264 = ("libx264", "yuv420p", {"crf": "12", "preset": "fast"})
_WRITERS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    ".mp4": ("mp4", *_H264), ".m4v": ("mp4", *_H264), ".mov": ("mov", *_H264), ".mkv": ("matroska", *_H264),
    ".webm": ("webm", "libvpx", "yuv420p", {"crf": "4", "b": "20M"}),  # VP8: constrained quality needs a bit rate
    ".avi": ("avi", "mjpeg", "yuvj444p", {"qmin": "1", "qmax": "2"}),
    ".gif": ("gif", "gif", "pal8", {}),  # palette per frame (Pillow's median cut): exact for ≤ 256 colours
}  # fmt: skip


def write_video(path: str | Path, frames: np.ndarray, fps: float = 8.0) -> None:
    """(T, H, W, 3) uint8 frames (or greyscale (T, H, W)) → a video file whose container and codec follow the suffix.

    mp4/m4v/mov/mkv: H.264 (CRF 12; MPEG-4 part 2 where PyAV lacks libx264), an odd width or height padded by one
    repeated edge row/column; webm: VP8; avi: MJPEG; gif: 256-colour palette per frame. All near-lossless, so solid
    colours come back within a few levels. For tests, examples and `vlfuse data show`; written atomically.

    Raises:
        DataError: an unsupported suffix, or frames that are not a non-empty (T, H, W, 3) uint8 array; fps ≤ 0.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _WRITERS:
        raise DataError(f"cannot write video '{path}': unsupported suffix {suffix or '(none)'!r}; expected one of "
                        f"{', '.join(_WRITERS)}")  # fmt: skip
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)  # (T, H, W) -> (T, H, W, 3)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise DataError(f"cannot write video '{path}': frames are {frames.dtype} {tuple(frames.shape)}; expected a "
                        "non-empty (T, H, W, 3) uint8 array")  # fmt: skip
    if not fps > 0:
        raise DataError(f"cannot write video '{path}': fps must be positive, got {fps}")
    av = _import_av()
    fmt, codec, pix_fmt, options = _WRITERS[suffix]
    if codec == "libx264" and codec not in av.codecs_available:
        codec, options = "mpeg4", {"qmin": "1", "qmax": "2"}
    if codec == "libx264" and (frames.shape[1] % 2 or frames.shape[2] % 2):  # 4:2:0 H.264 needs even sides
        frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge")

    def write(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format=fmt) as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
            stream.options = options
            for rgb in frames:
                for packet in stream.encode(_frame(av, rgb, pix_fmt)):
                    container.mux(packet)
            container.mux(stream.encode())  # flush

    atomic_write(path, write)


def _frame(av: Any, rgb: np.ndarray, pix_fmt: str) -> Any:
    """(H, W, 3) uint8 → an av.VideoFrame; for "pal8" with a median-cut palette of the frame's own colours."""
    if pix_fmt != "pal8":
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    from PIL import Image

    image = Image.fromarray(rgb).quantize(256)
    colours = np.asarray(image.getpalette(), dtype=np.uint8).reshape(-1, 3)  # (N, 3)
    palette = np.zeros((256, 4), dtype=np.uint8)  # (256, ARGB)
    palette[: len(colours), 0], palette[: len(colours), 1:] = 255, colours
    return av.VideoFrame.from_ndarray((np.asarray(image), palette), format="pal8")
