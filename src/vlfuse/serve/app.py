"""The FastAPI app: `create_app(run, options=...)` mounts the capabilities of a classification run, a language bridge
and a retrieval index, plus /v1/info, /healthz and the web page at `/`."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

import vlfuse
from vlfuse.classify.run import ClassifyRun
from vlfuse.serve.backends import Predictor, TorchPredictor
from vlfuse.serve.capabilities import CAPABILITIES, ServeContext
from vlfuse.serve.errors import install_error_handlers
from vlfuse.serve.limits import BodySizeLimit, ServeLimits
from vlfuse.serve.video import reads_video
from vlfuse.task import RunRef, load_run_for

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

# Modules that register capabilities when imported; each decides from the ServeContext whether it applies.
CAPABILITY_MODULES = ["vlfuse.serve.predict", "vlfuse.serve.moderate", "vlfuse.serve.explain", "vlfuse.serve.bridge",
                      "vlfuse.serve.search"]  # fmt: skip
OPTIONS = ("bridge", "index", "retrieval_run")


def load_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Load what the options name: "bridge" (a `BridgeRun`, a bridge run directory or a shipped name such as
    "easy-vqa-bridge") and "index" (a `SearchIndex` or an index file, queried through "retrieval_run", by default
    the run recorded in the index).

    Raises:
        ValueError: an unknown option, or "retrieval_run" without "index".
        CheckpointError: a bridge or retrieval run that cannot be loaded, or an index built by another model.
        DataError: an index file that is missing or not an index.
    """
    options = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown serve option(s) {unknown}; expected some of: {', '.join(OPTIONS)}")
    loaded: dict[str, Any] = {}
    if "bridge" in options:
        bridge = options["bridge"]
        loaded["bridge"] = load_run_for(bridge, "ask") if isinstance(bridge, str | Path | RunRef) else bridge
    if "index" in options:
        from vlfuse.serve.search import SearchIndex

        index = options["index"]
        run = options.get("retrieval_run")
        loaded["index"] = index if isinstance(index, SearchIndex) else SearchIndex.load(index, run)
    elif "retrieval_run" in options:
        raise ValueError("option 'retrieval_run' needs 'index': a retrieval run is served with an index file (--index)")
    return loaded


def create_app(
    model: ClassifyRun | Predictor | None = None,
    *,
    limits: ServeLimits | None = None,
    options: dict[str, Any] | None = None,
) -> FastAPI:
    """Build the web service for a classification run and/or a language bridge and/or a retrieval index.

    Args:
        model: a loaded classification run (served with PyTorch), any predictor backend (e.g. `OnnxPredictor`), or
            None for a server without /v1/predict (then give a bridge or an index).
        limits: request limits and micro-batching settings (defaults: `ServeLimits()`).
        options: optional capabilities, by name (see `load_options`): {"bridge": BridgeRun or run dir or
            "easy-vqa-bridge"} mounts POST /v1/ask and /v1/caption; {"index": INDEX_FILE, "retrieval_run": DIR}
            mounts POST /v1/search and GET /v1/search/image/{position}.

    Returns:
        the FastAPI app; run it with uvicorn (`vlfuse serve` does).

    Raises:
        ValueError: nothing to serve, or an unknown option.
        CheckpointError / DataError: see `load_options` (e.g. an index built by another model than its run).
    """
    predictor: Predictor | None = TorchPredictor(model) if isinstance(model, ClassifyRun) else model
    limits = limits or ServeLimits()
    loaded = load_options(options)
    if predictor is None and not loaded:
        raise ValueError("nothing to serve: give a classification run, a bridge (--bridge) or an index (--index)")
    for module in CAPABILITY_MODULES:
        importlib.import_module(module)
    ctx = ServeContext(predictor=predictor, limits=limits, run_dir=_main_dir(predictor, loaded), options=loaded)
    mounted = [cap for cap in CAPABILITIES.values() if cap.available(ctx)]
    routers = [cap.routes(ctx) for cap in mounted]  # builders may add batchers and /v1/info sections to ctx

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for batcher in ctx.batchers.values():
            await batcher.start()
        try:
            yield
        finally:
            for batcher in ctx.batchers.values():
                await batcher.stop()

    capabilities = [cap.name for cap in mounted]
    app = FastAPI(
        docs_url=None,  # served below from local files: the default pages load their scripts from a CDN
        redoc_url=None,
        title="vlfuse",
        version=vlfuse.__version__,
        description=f"Vision-language models served from `{ctx.run_dir.name}` ({', '.join(capabilities)}). "
        'Errors are JSON: `{"error": {"code": ..., "message": ..., "field": ...}}`.',
        lifespan=lifespan,
    )
    app.state.context = ctx
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)

    @app.get("/healthz", tags=["service"], summary="Liveness: 200 while the server runs")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/info", tags=["service"], summary="Task, labels, metrics, limits, batching counters, versions")
    async def info() -> dict[str, Any]:
        main = _describe_main(ctx)
        return {
            "run": main["run"],
            "task": main["task"],
            "objective": main.get("objective"),
            "labels": main["labels"],
            "backend": main["backend"],
            "capabilities": capabilities,
            "inputs": main["inputs"],
            "metrics": main["metrics"],
            "versions": {"vlfuse": vlfuse.__version__, **main["versions"]},
            **main["extra"],
            **ctx.info,
            "limits": limits.as_dict(),
            "batching": {name: b.stats.as_dict() for name, b in ctx.batchers.items()},
        }

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    mount_docs(app)
    return app


def docs_assets() -> Path:
    """The Swagger UI and ReDoc files (swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js, favicon.png) that
    the `fastapi-offline` package ships (MIT; only its files are used), located without importing it."""
    from vlfuse.pretrained import package_dir, pip_command

    purpose = "the offline /docs and /redoc pages"
    return package_dir("fastapi_offline", pip_command("fastapi-offline"), purpose) / "static"


def mount_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc, their scripts and styles served by this server, so they work offline."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    app.mount("/docs-assets", StaticFiles(directory=docs_assets()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="vlfuse - Swagger UI",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js", swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )  # fmt: skip

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="vlfuse - ReDoc",
                              redoc_js_url="/docs-assets/redoc.standalone.js",
                              redoc_favicon_url="/docs-assets/favicon.png", with_google_fonts=False)  # fmt: skip


def _main_dir(predictor: Predictor | None, loaded: dict[str, Any]) -> Path:
    """The folder the server is named after: the classification run, else the bridge run, else the retrieval run."""
    if predictor is not None:
        return predictor.path
    if "bridge" in loaded:
        return loaded["bridge"].path
    return loaded["index"].run.path


def _describe_main(ctx: ServeContext) -> dict[str, Any]:
    """The /v1/info facts of the main served model: the classifier, else the bridge, else the retrieval run."""
    p = ctx.predictor
    if p is None:
        from vlfuse.serve.bridge import describe_bridge
        from vlfuse.serve.search import describe_retrieval

        bridge = ctx.options.get("bridge")
        return describe_bridge(bridge) if bridge is not None else describe_retrieval(ctx.options["index"])
    described = p.describe()
    inputs = {
        "image": p.reads_image,
        "text": p.reads_text,
        "either_may_be_missing": p.missing_modalities,
        "image_size": p.image_size,
    }
    if reads_video(p):  # the image side takes clips: a 'video' field (how clips are read: the "video" section)
        inputs.update(image=False, image_size=None, video=True)
    return {
        "run": p.path.name,
        "task": getattr(p, "task", "classify"),
        "objective": p.objective,
        "labels": p.label_names,
        "backend": p.backend,
        "inputs": inputs,
        "metrics": described.pop("metrics"),
        "versions": described.pop("versions"),
        "extra": described,  # model config, placeholders_learned, onnx_file
    }
