"""Export a trained run to ONNX: a plain-tensor wrapper around the model, the export itself, int8 quantisation.

The model's `forward` takes a `Batch` dataclass; ONNX needs plain tensor inputs. `OnnxExportWrapper` takes, for a
model with both encoders:

    image          (B, C, H, W) float32, normalised exactly as in training ((pixels / 255 - mean) / std)
    image_present  (B,) bool, False where the row has no image (its pixels are ignored; the placeholder stands in)
    text_ids       (B, L) int64, the run's tokenizer output, padded to L = data.max_text_length
    text_mask      (B, L) bool, True for real tokens
    text_present   (B,) bool, False where the row has no text (its ids are ignored)

and returns `logits` (B, K). A model that reads one modality has only that modality's inputs and no presence flags.
Rows always carry their own image (no `image_index`), so one exported graph serves every mix of complete and
partial rows. The export directory is self-contained: `model.onnx`, `preprocess.json` (everything needed to turn
raw inputs into the tensors above and logits into labels) and `tokenizer.json`.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vlfuse.atomic import atomic_write_text
from vlfuse.classify import WEIGHTS
from vlfuse.classify.run import ClassifyRun
from vlfuse.errors import VLFuseError
from vlfuse.export.format import (
    DIGEST_KEY,
    FORMAT,
    FORMAT_VERSION,
    INT8_MODEL_FILE,
    METADATA_FILE,
    MODEL_FILE,
    RUN_EXPORT_DIR,
    file_digest,
)
from vlfuse.model import MultimodalModel
from vlfuse.types import Batch

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17


class ExportError(VLFuseError):
    """The model cannot be exported, or the exported graph does not reproduce the PyTorch model."""


def input_names(model: MultimodalModel) -> list[str]:
    """The exported graph's input names, in order, for this model's encoders."""
    names: list[str] = []
    presence = model.placeholders is not None
    if model.image_encoder is not None:
        names += ["image", "image_present"] if presence else ["image"]
    if model.text_encoder is not None:
        names += ["text_ids", "text_mask", "text_present"] if presence else ["text_ids", "text_mask"]
    return names


class OnnxExportWrapper(nn.Module):
    """Plain tensors in (see the module docstring), logits (B, K) out; the wrapped model is unchanged.

    Args:
        model: a trained MultimodalModel in eval mode.
    """

    def __init__(self, model: MultimodalModel) -> None:
        super().__init__()
        self.model = model
        self.names = input_names(model)

    def forward(self, *tensors: Tensor) -> Tensor:
        named = dict(zip(self.names, tensors, strict=True))
        batch = Batch(
            image=named.get("image"),  # (B, C, H, W)
            text_ids=named.get("text_ids"),  # (B, L)
            text_mask=named.get("text_mask"),  # (B, L)
            image_present=named.get("image_present"),  # (B,)
            text_present=named.get("text_present"),  # (B,)
        )
        return self.model(batch)  # (B, K)


def example_inputs(run: ClassifyRun, batch_size: int = 2, *, seed: int = 0, short: bool = False) -> dict[str, Tensor]:
    """Random inputs of the right shapes and dtypes for tracing and verification; the first row lacks its image
    and the second its text when the model has presence inputs (so both placeholder paths are exercised). With
    `short`, texts fill at most half the padded length (catches a trace that baked in the text lengths it saw)."""
    gen = torch.Generator().manual_seed(seed)
    names = input_names(run.model)
    data = run.cfg.data
    out: dict[str, Tensor] = {}
    if "image" in names:
        out["image"] = torch.randn(batch_size, data.channels, data.image_size, data.image_size, generator=gen)
    if "text_ids" in names:
        length = run.tokenizer.max_length
        ids = torch.randint(3, run.tokenizer.vocab_size, (batch_size, length), generator=gen)  # (B, L)
        longest = max(1, length // 2) if short else length
        lengths = torch.randint(1, longest + 1, (batch_size, 1), generator=gen)  # (B, 1)
        mask = torch.arange(length).unsqueeze(0) < lengths  # (B, L)
        out["text_ids"] = torch.where(mask, ids, run.tokenizer.pad_id)
        out["text_mask"] = mask
    if "image_present" in names:
        present = torch.ones(batch_size, dtype=torch.bool)  # (B,)
        out["image_present"] = present.clone()
        out["text_present"] = present.clone()
        if batch_size >= 2:
            out["image_present"][0] = False
            out["text_present"][1] = False
    return {name: out[name] for name in names}


def metadata(run: ClassifyRun, *, opset: int) -> dict[str, Any]:
    """What a runtime needs besides the graph: preprocessing, labels, objective, provenance."""
    data = run.cfg.data
    names = input_names(run.model)
    image = text = None
    if "image" in names:
        image = {
            "size": data.image_size,
            "channels": data.channels,
            "mean": list(run.preprocess.mean.flatten().tolist()),
            "std": list(run.preprocess.std.flatten().tolist()),
            "resize": "square, bilinear (vlfuse.data.images.decode_image_bytes)",
        }
    if "text_ids" in names:
        text = {"tokenizer": "tokenizer.json", "max_length": run.tokenizer.max_length, "pad_id": run.tokenizer.pad_id}
    placeholders = run.model.placeholders
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": MODEL_FILE,
        "int8_model": None,
        "inputs": names,
        "outputs": ["logits"],
        "objective": run.objective.kind,
        "label_names": run.label_names,
        "image": image,
        "text": text,
        "missing_modalities": placeholders is not None,
        "placeholders_learned": bool(placeholders is not None and placeholders.learned),
        "model_config": run.cfg.model.model_dump(mode="json"),
        "metrics": run.metrics,
        "source_run": str(run.path.resolve()),
        DIGEST_KEY: file_digest(run.path / WEIGHTS),
        "opset": opset,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }


def export_onnx(
    run: ClassifyRun,
    out_dir: str | Path | None = None,
    *,
    quantize: str | None = None,
    opset: int = DEFAULT_OPSET,
    verify_atol: float = 1e-4,
) -> Path:
    """Write `model.onnx`, `preprocess.json` and `tokenizer.json` (and `model.int8.onnx` with quantize="int8").

    The exported graph is checked against PyTorch on random inputs (a batch with mixed presence flags, and a single
    row of short text) before anything is kept; a mismatch larger than `verify_atol` raises instead of leaving a
    wrong model behind.

    Args:
        run: the loaded run.
        out_dir: target folder (default: `<run>/onnx`).
        quantize: None, or "int8" for dynamic int8 weight quantisation (onnxruntime.quantization).
        opset: ONNX opset version.
        verify_atol: largest accepted |ONNX - PyTorch| logit difference on the verification batches.

    Returns:
        the export folder.

    Raises:
        ExportError: the export fails or the graph does not reproduce the model.
    """
    if quantize not in (None, "int8"):
        raise ExportError(f"--quantize must be 'int8' (or omitted), got {quantize!r}")
    packed = [name for name, m in run.model.named_modules() if not getattr(m, "exports_to_onnx", True)]
    if packed:  # packed sequences, which the TorchScript ONNX exporter cannot trace
        raise ExportError(f"run '{run.path}': ONNX export does not support the gru text encoder (packed sequences) "
                          f"yet — found {packed[0]}; seed_lstm, bow and transformer export")  # fmt: skip
    out = Path(out_dir) if out_dir is not None else run.path / RUN_EXPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    model = run.model.cpu().eval()
    wrapper = OnnxExportWrapper(model).eval()
    inputs = example_inputs(run, batch_size=3)
    names = list(inputs)
    onnx_path = out / MODEL_FILE
    tmp_path = out / f".{MODEL_FILE}.tmp"
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused encoder-layer kernel has no ONNX form
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter (see docs/design.md)
            torch.onnx.export(
                wrapper,
                tuple(inputs.values()),
                str(tmp_path),
                input_names=names,
                output_names=["logits"],
                dynamic_axes={**{n: {0: "batch"} for n in names}, "logits": {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        checks = [example_inputs(run, batch_size=5, seed=1), example_inputs(run, batch_size=1, seed=2, short=True)]
        diff = max(max_abs_difference(wrapper, tmp_path, inputs) for inputs in checks)
        if diff > verify_atol:
            raise ExportError(
                f"the exported graph differs from the PyTorch model by {diff:.2e} (max |logit difference|) on a "
                f"verification batch; expected at most {verify_atol:.0e}"
            )
        # verified: from here until the new preprocess.json is written the folder holds no export (a failed export
        # above leaves a previous one untouched)
        (out / METADATA_FILE).unlink(missing_ok=True)
        tmp_path.replace(onnx_path)
    except ExportError:
        raise
    except Exception as err:  # the exporter raises many unrelated types (RuntimeError, torch.onnx errors, ...)
        raise ExportError(f"ONNX export of run '{run.path}' failed: {type(err).__name__}: {err}") from err
    finally:
        tmp_path.unlink(missing_ok=True)
        torch.backends.mha.set_fastpath_enabled(fastpath)
    meta = metadata(run, opset=opset)
    if run.tokenizer is not None:
        run.tokenizer.save(out / "tokenizer.json")
    elif (run.path / "tokenizer.json").is_file():
        shutil.copy(run.path / "tokenizer.json", out / "tokenizer.json")
    if quantize == "int8":
        quantize_int8(onnx_path, out / INT8_MODEL_FILE)
        meta["int8_model"] = INT8_MODEL_FILE
    atomic_write_text(out / METADATA_FILE, json.dumps(meta, indent=1))
    log.info("exported %s to %s (inputs: %s)", run.path, out, ", ".join(names))
    return out


def max_abs_difference(wrapper: nn.Module, onnx_path: str | Path, inputs: dict[str, Tensor]) -> float:
    """max |ONNX logits - PyTorch logits| for one batch of plain-tensor inputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = wrapper(*inputs.values()).numpy()  # (B, K)
    got = session.run(["logits"], {k: v.numpy() for k, v in inputs.items()})[0]  # (B, K)
    return float(abs(got - expected).max())


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Dynamic int8 quantisation: MatMul / Gemm weights stored as int8, their activations quantised at run time.

    The graph first goes through onnxruntime's pre-processing (shape inference and graph optimisation), as its
    quantiser recommends. Convolutions stay in float: quantising them too (ConvInteger) made the easy-VQA model 3-10x
    slower on CPU when tried during development, because onnxruntime has no fast integer convolution kernel here.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dst = Path(dst)
    prepared = dst.with_name(f".{dst.name}.pre.onnx")
    try:
        quant_pre_process(str(src), str(prepared))
        quantize_dynamic(str(prepared), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        prepared.unlink(missing_ok=True)
    return dst
