"""Request limits (upload bytes, pixels, formats, text length) and the checks that turn a bad upload into a 4xx."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field

import torch
from fastapi import HTTPException
from PIL import Image, UnidentifiedImageError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlfuse.data.images import decode_image_bytes
from vlfuse.data.text import require_text as require_text_rule
from vlfuse.errors import DataError
from vlfuse.serve.errors import ApiError, error_body

DEFAULT_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")


@dataclass(frozen=True)
class ServeLimits:
    """What the server accepts; every limit is a CLI option of `vlfuse serve`.

    Attributes:
        max_upload_bytes: largest uploaded file (an image, or a video run's clip), in bytes.
        max_pixels: largest image, in width × height pixels (checked from the header, before decoding); at most
            Pillow's decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS).
        formats: accepted image formats, as Pillow names them (PNG, JPEG, WEBP, GIF, BMP, TIFF, ...).
        max_text_chars: longest text, in characters.
        max_batch: most requests gathered into one model call.
        max_wait_ms: longest a request waits for others to join its batch.
        max_queue: most requests waiting for the model per endpoint; more are answered 503 with Retry-After.
        max_connections: most open connections; at the limit a new one replaces a connection stuck in its headers
            for at least a second, else it is answered 503 and closed at once.
        header_timeout_s: a client must send a request's headers within this many seconds (else 408, closed).
        body_timeout_s: ... and its body within this many seconds after the headers (else 408, closed).
        keep_alive_s: an idle keep-alive connection is closed after this many seconds.
    """

    max_upload_bytes: int = 5 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    formats: tuple[str, ...] = field(default=DEFAULT_FORMATS)
    max_text_chars: int = 1000
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 128
    max_connections: int = 1000
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(f.strip().upper() for f in self.formats if f.strip()))
        counts = ("max_upload_bytes", "max_text_chars", "max_batch", "max_queue", "max_connections")
        if any(getattr(self, name) < 1 for name in counts):
            raise ValueError(f"{', '.join(counts)} must be positive")
        if min(self.header_timeout_s, self.body_timeout_s, self.keep_alive_s) <= 0:
            raise ValueError("header_timeout_s, body_timeout_s and keep_alive_s must be positive")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        bomb = Image.MAX_IMAGE_PIXELS
        if not 1 <= self.max_pixels <= (bomb or self.max_pixels):
            raise ValueError(
                f"max_pixels must be between 1 and Pillow's decompression-bomb limit ({bomb:,}), got {self.max_pixels}"
            )
        if not self.formats:
            raise ValueError("formats must name at least one image format, e.g. PNG,JPEG")
        unknown = [f for f in self.formats if f not in Image.registered_extensions().values()]
        if unknown:
            raise ValueError(f"unknown image format(s) {unknown}; Pillow knows e.g. {', '.join(DEFAULT_FORMATS)}")

    @property
    def max_body_bytes(self) -> int:
        """The whole request body: the image, the text (12 bytes a character at most, URL-encoded UTF-8) and 64 KiB
        of form framing."""
        return self.max_upload_bytes + 12 * self.max_text_chars + 64 * 1024

    def batching(self) -> dict[str, float | int]:
        """The `MicroBatcher` settings of every endpoint."""
        return {"max_batch": self.max_batch, "max_wait_s": self.max_wait_ms / 1000, "max_queue": self.max_queue}

    def as_dict(self) -> dict:
        return {**asdict(self), "formats": list(self.formats), "max_body_bytes": self.max_body_bytes}

    def form_limits(self, *, files: int, texts: bool = True) -> dict[str, int]:
        """Form parser limits of an endpoint (FastAPI `form_limits`): a few fields, `files` file parts, and non-file
        parts sized for a text of `max_text_chars` when `texts`: up to 4 bytes a character in UTF-8, and 3 times that
        URL-encoded (%XX), so a text within the character limit always reaches the character check."""
        return {"max_fields": 8, "max_files": files, "max_part_size": (12 * self.max_text_chars if texts else 0) + 1024}


def require_text(value: str, field: str, max_chars: int | None = None) -> str:
    """A text field under the one rule every entry point applies (`vlfuse.data.text.require_text`): control
    characters removed, whitespace stripped, non-empty, at most `max_chars` characters (the form declaration has
    already refused a longer raw value).

    Raises:
        ApiError: 422 `empty_text` or `text_too_long`, naming the field.
    """
    try:
        return require_text_rule(value, f"field '{field}'", max_chars=max_chars)
    except DataError as err:
        code = "text_too_long" if "too long" in str(err) else "empty_text"
        raise ApiError(422, code, str(err), field=field) from None


async def read_upload(image, limits: ServeLimits, *, size: int, channels: int) -> torch.Tensor:
    """A required 'image' `UploadFile`, checked and decoded off the event loop to (C, size, size) uint8 (FastAPI has
    already refused a missing file, an HTML form's empty file input included).

    Raises:
        ApiError: see `decode_upload`.
    """
    from starlette.concurrency import run_in_threadpool

    data = await image.read()
    return await run_in_threadpool(decode_upload, data, image.filename, limits, size=size, channels=channels)


def decode_upload(data: bytes, filename: str | None, limits: ServeLimits, *, size: int, channels: int) -> torch.Tensor:
    """Check an uploaded image against the limits, then decode it to (C, size, size) uint8 as in training.

    Raises:
        ApiError: 413 when over the byte or pixel limits, 415 when not an image or not an accepted format,
            422 when truncated or corrupt. Every message names the field ('image') and what was expected.
    """
    name = f"'{filename}'" if filename else "the upload"
    accepted = ", ".join(limits.formats)
    if not data:
        raise ApiError(
            422, "empty_image", f"field 'image': {name} is empty (0 bytes); expected a {accepted} image", field="image"
        )
    if len(data) > limits.max_upload_bytes:
        raise ApiError(
            413,
            "image_too_large",
            f"field 'image': {name} is {len(data):,} bytes; expected at most {limits.max_upload_bytes:,} bytes",
            field="image",
        )
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            fmt, (width, height) = im.format, im.size
    except UnidentifiedImageError:
        raise ApiError(
            415,
            "unsupported_image",
            f"field 'image': {name} is not an image Pillow can read; expected {accepted}",
            field="image",
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ApiError(
            413, "too_many_pixels", f"field 'image': {name} is a decompression bomb ({err})", field="image"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ApiError(
            422, "invalid_image", f"field 'image': {name} is corrupt ({err}); expected a complete image", field="image"
        ) from None
    if fmt not in limits.formats:
        raise ApiError(
            415, "unsupported_image", f"field 'image': {name} is a {fmt} image; expected {accepted}", field="image"
        )
    if width * height > limits.max_pixels:
        raise ApiError(
            413,
            "too_many_pixels",
            f"field 'image': {name} is {width}x{height} = {width * height:,} pixels; expected at most "
            f"{limits.max_pixels:,} pixels",
            field="image",
        )
    try:
        return decode_image_bytes(data, size=size, channels=channels, source=filename or "upload")  # (C, S, S)
    except DataError as err:
        raise ApiError(422, "invalid_image", f"field 'image': {err}", field="image") from None


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit; FastAPI re-raises HTTPExceptions met while
    parsing a body, so it reaches the JSON error handler as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"the request body is over {limit:,} bytes")


class BodySizeLimit:
    """ASGI middleware: a request body over `max_bytes` gets a 413 JSON error.

    A declared Content-Length over the limit is refused without handing the request to the app; a streamed (chunked)
    body is cut off once it passes the limit. In both cases the rest of the body is read and dropped first (up to
    `drain_factor` × the limit): closing a connection that still holds unread request bytes makes the OS reset it,
    and the client can then lose the 413 it was sent. A client that asked `Expect: 100-continue` has not sent its
    body yet, so it is refused at once.

    Args:
        app: the ASGI app to protect.
        max_bytes: largest accepted body.
        drain_factor: read and drop at most this many times `max_bytes` of an oversize body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, drain_factor: int = 4) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_factor * max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            if headers.get(b"expect", b"").lower() != b"100-continue" and int(declared) <= self.drain_bytes:
                await _drain(receive, self.drain_bytes)
            await self._refuse(send, int(declared))
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await _drain(receive, self.drain_bytes - received)
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send: Send, size: int) -> None:
        body = error_body(
            "body_too_large", f"the request body is {size:,} bytes; expected at most {self.max_bytes:,} bytes"
        )
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop request body messages until the body ends or `budget` bytes have been read."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        budget -= len(message.get("body", b""))
