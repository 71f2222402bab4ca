"""vlfuse: vision-language fusion toolkit.

Example:
    >>> import vlfuse
    >>> run = vlfuse.train("configs/easy_vqa.yaml", run_dir="runs/vqa")
    >>> run.predict(image="shape.png", text="what color is the shape?")
"""

__version__ = "0.1.0"

from vlfuse import components  # noqa: E402,F401  (fills the registries: components and tasks)
from vlfuse.api import evaluate, load_run, train  # noqa: E402
from vlfuse.registry import FUSIONS, HEADS, IMAGE_ENCODERS, TEXT_ENCODERS  # noqa: E402
from vlfuse.task import TASKS  # noqa: E402

__all__ = ["FUSIONS", "HEADS", "IMAGE_ENCODERS", "TASKS", "TEXT_ENCODERS", "evaluate", "load_run", "train"]
