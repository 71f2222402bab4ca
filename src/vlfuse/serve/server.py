"""`vlfuse serve`: load a run (or its ONNX export) and serve it with uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

from vlfuse.serve.app import create_app
from vlfuse.serve.backends import load_predictor
from vlfuse.serve.limits import ServeLimits

log = logging.getLogger(__name__)


def serve(
    path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "torch",
    limits: ServeLimits | None = None,
    log_level: str = "info",
) -> None:
    """Serve a run until interrupted (Ctrl-C).

    Args:
        path: run directory (or ONNX export folder for the onnx backends).
        host: interface to listen on; the default serves this machine only.
        port: TCP port.
        backend: torch, onnx or onnx-int8.
        limits: request limits and micro-batching settings.
        log_level: uvicorn's log level (info logs every request).
    """
    import uvicorn

    app = create_app(load_predictor(path, backend), limits=limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
