"""A finished video run, loaded for prediction and evaluation (`vlfuse.load_run(RUN)` for a video run): a classify run
whose image side is a clip. Never imports the training code (`vlfuse.video.task`)."""

from __future__ import annotations

from pathlib import Path

import torch

from vlfuse.classify.run import ClassifyRun, Prediction
from vlfuse.data.text import TextTokenizer
from vlfuse.data.transforms import VideoPreprocessor
from vlfuse.encoders.video import wrap_frame_encoder
from vlfuse.model import MultimodalModel, build_model
from vlfuse.video.config import VideoConfig


def build_video_classifier(cfg: VideoConfig, tokenizer: TextTokenizer | None, num_outputs: int) -> MultimodalModel:
    """The run's model: the per-frame image encoder wrapped with its temporal module, then fusion and head."""
    data = cfg.data

    def wrap(frame_encoder: torch.nn.Module) -> torch.nn.Module:
        return wrap_frame_encoder(frame_encoder, cfg.model.temporal, in_channels=data.channels,
                                  image_size=data.image_size, frames=data.video.frames)  # fmt: skip

    return build_model(
        cfg.model, in_channels=data.channels, image_size=data.image_size,
        vocab_size=tokenizer.vocab_size if tokenizer else 0, pad_id=tokenizer.pad_id if tokenizer else 0,
        max_length=data.max_text_length, num_outputs=num_outputs, wrap_image_encoder=wrap,
    )  # fmt: skip


def read_clip(path: str | Path, cfg: VideoConfig) -> torch.Tensor:
    """One clip file (or folder of frames) as the run's training data was decoded: (F, C, S, S) uint8."""
    from vlfuse.data.video import limits_of, read_video

    data = cfg.data
    return read_video(path, frames=data.video.kept_frames, size=data.image_size, channels=data.channels,
                      fps=data.video.fps, limits=limits_of(data.video), fit=data.fit)  # fmt: skip


class VideoRun(ClassifyRun):
    """A trained video run directory, ready to predict on clip files (+ text)."""

    task = "video"
    preprocessor_class = VideoPreprocessor
    image_word = "clip"

    @staticmethod
    def build_network(cfg: VideoConfig, tokenizer: TextTokenizer | None, num_outputs: int) -> MultimodalModel:
        return build_video_classifier(cfg, tokenizer, num_outputs)

    def load_pixels(self, video: str | Path | torch.Tensor | None) -> torch.Tensor:
        """One input clip as (F, C, S, S) uint8 at the run's frame count and size; zeros for a missing one."""
        data = self.cfg.data
        if video is None:
            return torch.zeros(data.video.kept_frames, data.channels, data.image_size, data.image_size,
                               dtype=torch.uint8)  # fmt: skip
        return video if isinstance(video, torch.Tensor) else read_clip(video, self.cfg)

    def predict(
        self, video: str | Path | None = None, text: str | None = None, *, top_k: int = 3, image: None = None
    ) -> list[Prediction]:  # fmt: skip
        """Top-k labels with probabilities for one clip (a video file or a folder of frames) + text."""
        if image is not None:
            raise ValueError(f"'{self.path}' is a video run: give a clip (video=...), not an image")
        return super().predict(video, text, top_k=top_k)
