"""`vlfuse serve`: load a classification run (or its ONNX export), a language bridge and/or a retrieval index, and
serve them with uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from vlfuse.serve.app import create_app
from vlfuse.serve.backends import load_predictor
from vlfuse.serve.limits import ServeLimits

log = logging.getLogger(__name__)


def run_kind(path: str | Path) -> str | None:
    """What a RUN argument names: "bridge" (a shipped bridge name or a bridge run), "retrieval", "classify" (any
    other folder: a run or an ONNX export), or None when it is no folder."""
    from vlfuse.lm.run import SHIPPED

    if str(path) in SHIPPED:
        return "bridge"
    folder = Path(path)
    if not folder.is_dir():
        return None
    try:
        raw = yaml.safe_load((folder / "config.yaml").read_text()) if (folder / "config.yaml").is_file() else None
    except yaml.YAMLError:
        raw = None  # Run.load names the problem
    task = raw.get("task") if isinstance(raw, dict) else None
    return task if task in ("bridge", "retrieval") else "classify"


def serve(
    path: str | Path | None = None,
    *,
    bridge: str | Path | None = None,
    index: str | Path | None = None,
    retrieval_run: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "torch",
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
        backend: torch, onnx or onnx-int8 (for the classification run).
        limits: request limits and micro-batching settings.
        log_level: uvicorn's log level (info logs every request).

    Raises:
        ValueError: nothing to serve, two bridges or two retrieval runs, a retrieval run without an index.
    """
    import uvicorn

    kind = run_kind(path) if path is not None else None
    if kind == "bridge":
        if bridge is not None:
            raise ValueError(f"'{path}' is a bridge run and --bridge {bridge} names another; serve one bridge")
        path, bridge = None, path
    elif kind == "retrieval":
        if index is None:
            raise ValueError(f"'{path}' is a retrieval run: serve it with an index, --index INDEX_FILE (from "
                             f"`vlfuse index {path} SOURCE`)")  # fmt: skip
        if retrieval_run is not None:
            raise ValueError(f"'{path}' is a retrieval run and --retrieval-run {retrieval_run} names another")
        path, retrieval_run = None, path
    if path is None and bridge is None and index is None:
        raise ValueError("nothing to serve: give a RUN directory, --bridge RUN_OR_NAME and/or --index INDEX_FILE")
    predictor = load_predictor(path, backend) if path is not None else None
    options = {"bridge": bridge, "index": index, "retrieval_run": retrieval_run}
    app = create_app(predictor, limits=limits, options=options)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
