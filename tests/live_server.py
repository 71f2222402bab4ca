"""Test helpers for the HTTP service: a real uvicorn server on a free loopback port, and images to upload."""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from PIL import Image


@contextmanager
def live_server(app, *, timeout: float = 30.0) -> Iterator[str]:
    """Run `app` with uvicorn in a background thread on a free 127.0.0.1 port, with the connection guards
    `vlfuse serve` uses (`uvicorn_config`, the app's limits); yields the base URL."""
    from vlfuse.serve.connections import uvicorn_config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, app.state.context.limits, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def free_port() -> int:
    """A port that was free a moment ago (for servers started in another process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def easy_vqa_image(index: int = 0) -> Path:
    """A real easy-VQA test image (PNG) shipped by the easy-vqa package."""
    from easy_vqa import get_test_image_paths

    paths = get_test_image_paths()
    return Path(paths[sorted(paths)[index]])


def image_bytes(size: tuple[int, int] = (64, 64), fmt: str = "PNG", colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def truncated_png() -> bytes:
    """A noisy PNG with its last 2,000 bytes cut off: the header reads fine, decoding fails."""
    buffer = io.BytesIO()
    Image.effect_noise((96, 96), 60).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()[:-2000]


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A decompression bomb: a valid PNG header declaring width × height pixels, with a few hundred bytes of data
    (the pixels would decompress to gigabytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = zlib.compress(b"\0" * (width + 1) * 16, 9)  # the first 16 rows of zeros; the rest is left out
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
