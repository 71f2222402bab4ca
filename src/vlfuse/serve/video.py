"""Video uploads of a served video run: the `video` field of POST /v1/predict, decoded as the run's training data was
(`vlfuse.data.video.read_video` with the run's frame count, size, channels, fps, fit and `data.video` limits), under
the server's upload byte limit. Every failure is an `ApiError` (4xx) naming the field."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from vlfuse.errors import DataError
from vlfuse.serve.errors import ApiError

if TYPE_CHECKING:
    from vlfuse.data.video import VideoLimits
    from vlfuse.serve.backends import Predictor
    from vlfuse.serve.limits import ServeLimits

log = logging.getLogger(__name__)

FIELD = "video"
FORMATS = ("MP4", "WebM", "AVI", "MOV", "MKV", "GIF")  # the containers read_video's demuxers open
EXPECTED = "expected a video file (MP4, WebM, AVI, MOV, MKV or GIF)"
# VideoLimits field → (error code, the run's data.video setting it comes from)
_LIMIT_CODES = {
    "max_file_bytes": ("video_too_large", "max_file_mb"),
    "max_duration": ("video_too_long", "max_duration"),
    "max_frames": ("too_many_frames", "max_frames"),
    "max_side": ("video_too_wide", "max_side"),
}


def reads_video(predictor: Predictor | None) -> bool:
    """Whether the served classifier takes clips (a video run) rather than images."""
    return predictor is not None and bool(getattr(predictor, "reads_video", False))


@dataclass(frozen=True)
class ClipReader:
    """How the server decodes a clip for a video run: the run's own decoding settings and limits, with the file size
    also bounded by the server's upload limit.

    Attributes:
        frames: frames decoded per clip (`data.video.kept_frames`); size: frame side; channels: 3 or 1.
        fps: the run's `data.video.fps` (None: frames spread over the clip); fit: stretch or crop.
        limits: the run's `data.video` limits, `max_file_bytes` lowered to the server's `max_upload_bytes`.
    """

    frames: int
    size: int
    channels: int
    fps: float | None
    fit: str
    limits: VideoLimits

    @classmethod
    def of(cls, predictor: Predictor, limits: ServeLimits) -> ClipReader:
        """The reader of a video run's predictor (it holds the run: video runs are served with PyTorch).

        Raises:
            MissingPackageError: PyAV is not installed (checked at startup, not on the first upload).
        """
        from vlfuse.data.video import limits_of
        from vlfuse.pretrained import pip_command, require_module

        require_module("av", pip_command("av"), "serving a video run (decoding uploaded clips)")
        data = predictor.run.cfg.data
        run_limits = limits_of(data.video)
        return cls(
            frames=data.video.kept_frames, size=data.image_size, channels=data.channels, fps=data.video.fps,
            fit=data.fit, limits=replace(run_limits, max_file_bytes=min(run_limits.max_file_bytes,
                                                                        limits.max_upload_bytes)),
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """The /v1/info "video" section: how clips are read and what is refused."""
        return {
            "formats": list(FORMATS),
            "frames": self.frames,
            "frame_size": self.size,
            "channels": self.channels,
            "fps": self.fps,
            "fit": self.fit,
            "max_upload_bytes": self.limits.max_file_bytes,
            "max_duration": self.limits.max_duration,
            "max_frames": self.limits.max_frames,
            "max_side": self.limits.max_side,
        }

    def note(self) -> str:
        """The limits in words, for the OpenAPI description of the field."""
        lim = self.limits
        return (
            f"{', '.join(FORMATS)}; at most {lim.max_file_bytes:,} bytes, {lim.max_duration:g} s, {lim.max_frames:,} "
            f"frames and {lim.max_side:,} pixels a side; {self.frames} frames are read"
        )

    def decode(self, data: bytes, filename: str | None) -> torch.Tensor:
        """An uploaded clip → (F, C, S, S) uint8, exactly as the run decodes a clip file (call it off the event loop).

        Raises:
            ApiError: 413 over the byte, duration, frame or side limits; 415 not a video container the run reads;
                422 empty, corrupt or without a decodable frame. Every message names the field ('video').
        """
        import av

        from vlfuse.data.video import read_video

        name = filename or "upload"
        shown = f"'{filename}'" if filename else "the upload"
        if not data:
            raise ApiError(422, "empty_video", f"field 'video': {shown} is empty (0 bytes); {EXPECTED}", field=FIELD)
        if len(data) > self.limits.max_file_bytes:
            raise ApiError(413, "video_too_large", f"field 'video': {shown} is {len(data):,} bytes; expected at most "
                           f"{self.limits.max_file_bytes:,} bytes", field=FIELD)  # fmt: skip
        try:
            clip = read_video(data, frames=self.frames, size=self.size, channels=self.channels, fps=self.fps,
                              limits=self.limits, name=name, fit=self.fit)  # fmt: skip
        except DataError as err:
            raise data_error(err) from None
        except (av.error.FFmpegError, OSError, EOFError) as err:  # FFmpeg failing outside read_video's own checks
            log.warning("uploaded clip %s could not be decoded: %s: %s", shown, type(err).__name__, err)
            raise ApiError(422, "invalid_video", f"field 'video': {shown} is corrupt (its header cannot be read); "
                           f"{EXPECTED}", field=FIELD) from None  # fmt: skip
        return clip  # (F, C, S, S) uint8


def data_error(err: DataError) -> ApiError:
    """A `read_video` refusal as the API's error: the status and code by kind, the message naming the field and the
    run setting behind a limit."""
    message = str(err)
    limit = re.search(r"\(VideoLimits\.(\w+)\)", message)
    if limit and limit.group(1) in _LIMIT_CODES:
        code, setting = _LIMIT_CODES[limit.group(1)]
        message = message.replace(limit.group(0), f"(the served run's data.video.{setting})")
        return ApiError(413, code, f"field 'video': {message}", field=FIELD)
    if "cannot be decoded as a video" in message or "has no video stream" in message:
        return ApiError(415, "unsupported_video", f"field 'video': {message}", field=FIELD)
    return ApiError(422, "invalid_video", f"field 'video': {message}", field=FIELD)
