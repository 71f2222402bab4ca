"""`vlfuse serve`: load a classification run (or its ONNX export), a language bridge and/or a retrieval index, and
serve them with uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

from vlfuse.errors import CheckpointError
from vlfuse.serve.app import create_app
from vlfuse.serve.backends import load_predictor
from vlfuse.serve.limits import ServeLimits
from vlfuse.task import RunRef, resolve_run

log = logging.getLogger(__name__)


def served_as(path: str | Path) -> tuple[str, RunRef | Path]:
    """How `vlfuse serve PATH` mounts PATH: its task's `serve_as` ("predict", "bridge" or "retrieval_run") and the
    resolved run; ("predict", PATH) for anything that is no run, e.g. an ONNX export folder (its loader names any
    problem)."""
    try:
        ref = resolve_run(path)
    except CheckpointError:
        return "predict", Path(path)
    return ref.task.serve_as, ref


def serve(
    path: str | Path | None = None,
    *,
    bridge: str | Path | None = None,
    index: str | Path | None = None,
    retrieval_run: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "auto",
    limits: ServeLimits | None = None,
    log_level: str = "info",
) -> None:
    """Serve until interrupted (Ctrl-C).

    Args:
        path: classification run directory (or ONNX export folder for the onnx backends); a bridge run (or a shipped
            bridge name) is served as `bridge`, a retrieval run as `retrieval_run`. None: no /v1/predict.
        bridge: language bridge run directory or shipped name ("easy-vqa-bridge"): POST /v1/ask and /v1/caption.
        index: index file from `vlfuse index`: POST /v1/search and GET /v1/search/image/{position}.
        retrieval_run: the retrieval run that built `index` (default: the run recorded in the index).
        host: interface to listen on; the default serves this machine only.
        port: TCP port.
        backend: auto (ONNX when the run exports and matches PyTorch, else PyTorch), torch, onnx or onnx-int8.
        limits: request limits and micro-batching settings.
        log_level: uvicorn's log level (info logs every request).

    Raises:
        ValueError: nothing to serve, two bridges or two retrieval runs, a retrieval run without an index.
    """
    import uvicorn

    from vlfuse.serve.connections import uvicorn_config
    from vlfuse.threads import configure_threads

    configure_threads()  # from the cores other processes leave free
    role, resolved = served_as(path) if path is not None else (None, None)
    if role == "bridge":
        if bridge is not None:
            raise ValueError(f"'{path}' is a bridge run and --bridge {bridge} names another; serve one bridge")
        path, bridge = None, resolved
    elif role == "retrieval_run":
        if index is None:
            raise ValueError(f"'{path}' is a retrieval run: serve it with an index, --index INDEX_FILE (from "
                             f"`vlfuse index {path} SOURCE`)")  # fmt: skip
        if retrieval_run is not None:
            raise ValueError(f"'{path}' is a retrieval run and --retrieval-run {retrieval_run} names another")
        path, retrieval_run = None, resolved
    if path is None and bridge is None and index is None:
        raise ValueError("nothing to serve: give a RUN directory, --bridge RUN_OR_NAME and/or --index INDEX_FILE")
    predictor = load_predictor(resolved, backend) if path is not None else None
    options = {"bridge": bridge, "index": index, "retrieval_run": retrieval_run}
    limits = limits or ServeLimits()
    app = create_app(predictor, limits=limits, options=options)
    uvicorn.Server(uvicorn_config(app, limits, host=host, port=port, log_level=log_level)).run()
