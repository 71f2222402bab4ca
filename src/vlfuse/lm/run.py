"""A trained bridge, ready to caption images and answer questions: `BridgeRun.load(run_dir or shipped name)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import yaml
from torch import Tensor

from vlfuse.data.images import load_images
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.errors import CheckpointError, DataError
from vlfuse.lm.bridge import BridgeModel
from vlfuse.lm.generate import GenerationConfig, OnToken, generate

WEIGHTS = "bridge.safetensors"
OnText = Callable[[int, str], None]  # (row, newly generated text)
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "shipped"
SHIPPED = {"easy-vqa-bridge": SHIPPED_DIR / "easy_vqa_bridge"}  # name → folder inside the package


def resolve_bridge_dir(run: str | Path) -> Path:
    """A run directory, or the name of a bridge shipped with vlfuse ("easy-vqa-bridge")."""
    if str(run) in SHIPPED:
        folder = SHIPPED[str(run)]
        missing = [name for name in ("config.yaml", WEIGHTS) if not (folder / name).is_file()]
        if missing:
            raise CheckpointError(f"the shipped bridge '{run}' is incomplete: {', '.join(missing)} missing from "
                                  f"{folder}; reinstall vlfuse")  # fmt: skip
        return folder
    path = Path(run)
    if not (path / "config.yaml").is_file():
        shipped = ", ".join(SHIPPED)
        raise CheckpointError(
            f"'{run}' is neither a bridge run directory (no config.yaml) nor a shipped bridge: {shipped}"
        )
    if not (path / WEIGHTS).is_file():
        raise CheckpointError(f"'{path}' has no {WEIGHTS}: is it a bridge run, and did its training finish?")
    return path


class BridgeRun:
    """Image encoder + trained projector/adapters + the pretrained LM, for inference.

    Attributes:
        cfg: the run's `BridgeExperimentConfig`.
        model: the `BridgeModel` (LM inside).
        encoder: the frozen image encoder.
        preprocess: the evaluation-time image preprocessing.
    """

    def __init__(self, cfg, model: BridgeModel, encoder: torch.nn.Module, run_dir: Path) -> None:
        self.cfg, self.model, self.encoder, self.run_dir = cfg, model, encoder, run_dir
        self.preprocess = ImagePreprocessor(cfg.data, augment=False)

    @classmethod
    def load(cls, run: str | Path) -> BridgeRun:
        from vlfuse.lm.experiment import BridgeExperimentConfig, build_bridge
        from vlfuse.train.checkpoint import load_model_weights

        run_dir = resolve_bridge_dir(run)
        cfg = BridgeExperimentConfig.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
        model, encoder = build_bridge(cfg)
        load_model_weights(model, run_dir / WEIGHTS)
        return cls(cfg, model.eval(), encoder.eval(), run_dir)

    # ------------------------------------------------------------------ inputs
    def load_images(self, paths: Sequence[str | Path]) -> Tensor:
        """Decode image files at the run's size and channels: (B, C, H, W) uint8; a bad file is a DataError."""
        images, errors = load_images([str(p) for p in paths], size=self.cfg.data.image_size,
                                     channels=self.cfg.data.channels)  # fmt: skip
        if errors:
            raise DataError("; ".join(str(e) for e in errors.values()))
        return images

    @torch.inference_mode()
    def visual_tokens(self, images: Tensor) -> Tensor:
        """(B, C, H, W) uint8 → visual tokens (B, N, D)."""
        return self.encoder(self.preprocess(images)).tokens

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        images: Tensor,
        prompts: Sequence[str],
        gen: GenerationConfig | None = None,
        on_text: OnText | None = None,
    ) -> list[str]:
        """One generated text per (image, prompt) pair; images (B, C, H, W) uint8 or visual tokens (B, N, D).

        `on_text(row, piece)` receives each row's text as it is generated (streaming).
        """
        gen = gen or self.cfg.generation
        visual = images if images.is_floating_point() and images.ndim == 3 else self.visual_tokens(images)
        embeds, mask = self.prompt_embeddings(visual, prompts)
        streamed = self._stream_decoder(on_text) if on_text is not None else None
        ids = generate(self.model.lm, embeds, mask, gen, eos_id=self.model.eos_id, on_token=streamed)
        return [self.model.tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]

    def prompt_embeddings(self, visual: Tensor, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Left-padded [user prefix, visual tokens, prompt, assistant header] embeddings (B, T, H) and mask (B, T)."""
        if len(prompts) != len(visual):
            raise ValueError(f"{len(prompts)} prompts for {len(visual)} images")
        ids = [self.model.encode_prompt(p) for p in prompts]
        length = max(map(len, ids))
        text = torch.full((len(ids), length), self.model.pad_id, dtype=torch.long)  # (B, L)
        text_mask = torch.zeros(len(ids), length, dtype=torch.long)  # (B, L)
        for b, row in enumerate(ids):
            text[b, length - len(row) :] = torch.tensor(row)
            text_mask[b, length - len(row) :] = 1
        with torch.inference_mode():
            embeds = self.model.embed(visual, text)  # (B, P + N + L, H): padding sits between visual and prompt
        fixed = embeds.shape[1] - length  # user prefix + visual tokens, always real
        mask = torch.cat([torch.ones(len(ids), fixed, dtype=torch.long), text_mask], dim=1)  # (B, T)
        # move each row's padding to the far left so the next token is at the last position for every row
        order = torch.argsort(mask, dim=1, stable=True)  # (B, T): pads first, then real tokens in order
        embeds = torch.gather(embeds, 1, order[..., None].expand_as(embeds))
        return embeds, torch.gather(mask, 1, order)

    def _stream_decoder(self, on_text: OnText) -> OnToken:
        """Wrap a (row, text piece) callback as a (row, token id) one, decoding incrementally per row."""
        tokens: dict[int, list[int]] = {}
        shown: dict[int, str] = {}

        def on_token(row: int, token: int) -> None:
            tokens.setdefault(row, []).append(token)
            text = self.model.tokenizer.decode(tokens[row], skip_special_tokens=True)
            piece = text[len(shown.get(row, "")) :]
            shown[row] = text
            if piece:
                on_text(row, piece)

        return on_token

    def ask(
        self,
        images: Tensor,
        questions: Sequence[str],
        gen: GenerationConfig | None = None,
        on_text: OnText | None = None,
    ) -> list[str]:
        """Free-form answers to questions about images (one question per image)."""
        return self.generate(images, questions, gen, on_text)

    def caption(self, images: Tensor, gen: GenerationConfig | None = None, on_text: OnText | None = None) -> list[str]:
        """A caption per image."""
        return self.generate(images, [self.cfg.caption_prompt] * len(images), gen, on_text)
