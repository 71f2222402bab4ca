"""Serve trained runs over HTTP: REST API (FastAPI), micro-batching, request limits and a web page.

Example:
    >>> from vlfuse.serve import create_app
    >>> app = create_app(vlfuse.load_run("runs/vqa"))  # then uvicorn, or from a shell: vlfuse serve runs/vqa
    >>> app = create_app(options={"bridge": "easy-vqa-bridge", "index": "shapes.index"})  # ask, caption, search
"""

from vlfuse.serve.app import create_app
from vlfuse.serve.backends import OnnxPredictor, TorchPredictor, load_predictor
from vlfuse.serve.capabilities import ServeContext, register_capability
from vlfuse.serve.limits import ServeLimits

__all__ = [
    "OnnxPredictor",
    "ServeContext",
    "ServeLimits",
    "TorchPredictor",
    "create_app",
    "load_predictor",
    "register_capability",
]
