"""The FastAPI app: `create_app(run)` mounts the run's capabilities, /v1/info, /healthz and the web page at `/`."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

import vlfuse
from vlfuse.api import Run
from vlfuse.serve.backends import Predictor, TorchPredictor
from vlfuse.serve.capabilities import CAPABILITIES, ServeContext
from vlfuse.serve.errors import install_error_handlers
from vlfuse.serve.limits import BodySizeLimit, ServeLimits

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

# Modules that register capabilities when imported. The language bridge (POST /v1/ask, /v1/caption) and the
# retrieval index (POST /v1/search) add their modules here; each decides from the ServeContext whether it applies.
CAPABILITY_MODULES = ["vlfuse.serve.predict"]


def create_app(
    model: Run | Predictor, *, limits: ServeLimits | None = None, options: dict[str, Any] | None = None
) -> FastAPI:
    """Build the web service for a run.

    Args:
        model: a loaded run (served with PyTorch) or any predictor backend (e.g. `OnnxPredictor`).
        limits: request limits and micro-batching settings (defaults: `ServeLimits()`).
        options: extra settings for optional capabilities (e.g. a retrieval index path), by name.

    Returns:
        the FastAPI app; run it with uvicorn (`vlfuse serve` does).
    """
    predictor: Predictor = TorchPredictor(model) if isinstance(model, Run) else model
    limits = limits or ServeLimits()
    for module in CAPABILITY_MODULES:
        importlib.import_module(module)
    ctx = ServeContext(predictor=predictor, limits=limits, run_dir=predictor.path, options=dict(options or {}))
    mounted = [cap for cap in CAPABILITIES.values() if cap.available(ctx)]
    routers = [cap.routes(ctx) for cap in mounted]  # builders may add batchers to ctx

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for batcher in ctx.batchers.values():
            await batcher.start()
        try:
            yield
        finally:
            for batcher in ctx.batchers.values():
                await batcher.stop()

    app = FastAPI(
        title="vlfuse",
        version=vlfuse.__version__,
        description=f"Vision-language model served from `{predictor.path.name}` ({predictor.backend} backend). "
        'Errors are JSON: `{"error": {"code": ..., "message": ..., "field": ...}}`.',
        lifespan=lifespan,
    )
    app.state.context = ctx
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    capabilities = [cap.name for cap in mounted]

    @app.get("/healthz", tags=["service"], summary="Liveness: 200 while the server runs")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/info", tags=["service"], summary="Task, labels, metrics, limits, batching counters, versions")
    async def info() -> dict[str, Any]:
        described = predictor.describe()
        return {
            "run": predictor.path.name,
            "task": predictor.task,
            "labels": predictor.label_names,
            "backend": predictor.backend,
            "capabilities": capabilities,
            "inputs": {
                "image": predictor.reads_image,
                "text": predictor.reads_text,
                "either_may_be_missing": predictor.missing_modalities,
                "image_size": predictor.image_size,
            },
            "metrics": described.pop("metrics"),
            "versions": {"vlfuse": vlfuse.__version__, **described.pop("versions")},
            **described,
            "limits": limits.as_dict(),
            "batching": {name: b.stats.as_dict() for name, b in ctx.batchers.items()},
        }

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
