"""The config sections every task shares (data, model, train), validation, YAML load/save and dotted
`--set key=value` overrides. Each task's whole config class lives in its package; `vlfuse.task.load_config` picks it.

Unknown keys are rejected with the list of valid ones; wrong types name the full dotted key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

from vlfuse.atomic import atomic_write_text
from vlfuse.errors import ConfigError
from vlfuse.registry import FUSIONS, HEADS, IMAGE_ENCODERS, TEXT_ENCODERS, ComponentConfig


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentConfig(Section):
    """Train-time image augmentation, applied batched on tensors (kornia). Choose per dataset: easy-VQA answers
    name colours, so colour jitter there would silently change the right answer."""

    hflip: bool = False  # random horizontal flip with p=0.5
    translate: float = 0.0  # max shift as a fraction of the image size
    rotate: float = 0.0  # max rotation in degrees
    scale: float = 0.0  # max zoom in/out as a fraction (0.1 → 0.9..1.1)
    brightness: float = 0.0  # colour jitter strengths (0 = off)
    contrast: float = 0.0
    erase: float = 0.0  # probability of random erasing


class StreamConfig(Section):
    """Training from WebDataset shards (`data.shards`): decoding and augmentation run in DataLoader worker processes
    (or the training process, with none); every rank and worker reads its own stream of shards through a shuffle
    buffer (`vlfuse.data.shards`)."""

    # DataLoader worker processes per rank (0: decode in the training process); auto: the rank's cores less the two
    # its training threads use (none on a 2-core machine, where workers' decoding stalls the training threads more
    # than it saves), at most 8
    workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    shuffle_buffer: int = Field(1000, ge=1)  # packed samples (an image with its rows) mixed before batching
    samples_per_epoch: int | None = Field(None, ge=1)  # training rows per epoch over all ranks; None: the packed count
    resample: bool = True  # each stream draws shards with replacement (every rank and worker always has data and
    # epochs are equal); False: the shards are dealt out, each to one stream, and need at least one per stream
    url: str | None = None  # where the shards are read from, `{name}` standing for a shard's file name, e.g.
    # "pipe:aws s3 cp s3://bucket/vqa/{name} -" or "https://host/vqa/{name}"; None: beside the index


class DataConfig(Section):
    """Where the data comes from and how it is preprocessed."""

    name: str = "easy-vqa"  # built-in dataset name, or "table" for a user table
    path: str | None = None  # table file (CSV / JSONL / Parquet) when name == "table"
    test_path: str | None = None  # optional separate test table
    image_column: str = "image"  # column holding image paths (relative paths resolve against the table folder)
    text_columns: list[str] = Field(default_factory=lambda: ["text"])
    label_column: str = "label"
    objective: Literal["multiclass", "binary", "multilabel"] | None = None  # None: the built-in's own (binary for
    # fashion-mnist-pairs), multiclass for tables
    label_separator: str = "|"  # splits multilabel cells ("cat|dog")
    image_size: int = Field(64, ge=8, le=1024)  # images are resized to image_size × image_size
    channels: Literal[1, 3] = 3
    fit: Literal["stretch", "crop"] = "stretch"  # image files: resize whole (stretch) or keep aspect, centre crop
    mean: list[float] | None = None  # per-channel normalisation; None → 0.5
    std: list[float] | None = None  # None → 0.5
    max_text_length: int = Field(32, ge=1)  # in tokens; longer texts are truncated
    tokenizer: Literal["word", "bpe"] = "word"
    vocab_size: int = Field(10000, ge=8)
    min_frequency: int = Field(1, ge=1)
    lowercase: bool = True
    strip_punctuation: bool = True
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)  # carved from train (grouped by image) with split_seed
    split_seed: int = 0
    limit: int | None = Field(None, ge=1)  # keep at most this many training rows (quick experiments / tests)
    test_limit: int | None = Field(None, ge=1)
    on_error: Literal["raise", "skip"] = "raise"  # skip: bad rows are skipped and listed, never silently
    options: dict[str, Any] = Field(default_factory=dict)  # dataset-specific options (e.g. pairs_per_image)
    root: str | None = None  # tables: the folder image paths must stay inside (default: the table's folder, which
    # relative paths resolve against); built-in datasets: the folder holding their files, when not at its default place
    allow_outside_root: bool = True  # tables: False refuses image paths that leave data.root ('../x.png', '/etc/...');
    # True keeps them with a warning
    encoding: str = "utf-8"  # text encoding of CSV / TSV / JSON(L) tables (e.g. latin-1, cp1252)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    shards: str | None = None  # stream the data from `vlfuse data pack` output: its folder (or its index.json);
    # the index names the source, labels and tokenizer, so `name` and `path` are not read
    stream: StreamConfig = Field(default_factory=StreamConfig)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown text encoding {v!r}; expected e.g. utf-8, latin-1, cp1252") from None
        return v


class VideoSettings(Section):
    """How clips are decoded (`vlfuse.data.video`) and which of their frames a model sees."""

    frames: int = Field(8, ge=1, le=256)  # frames the model sees per clip (T)
    decoded_frames: int | None = Field(None, ge=1, le=1024)  # frames kept per clip in memory, spread uniformly over
    # the clip (tables); None: `frames`. More than `frames` lets `sampling: random` pick different ones each epoch
    sampling: Literal["uniform", "random"] = "uniform"  # training's choice of `frames` among the kept frames:
    # uniform (evenly spaced, always the same) or random (one at random in each of `frames` equal segments, in order);
    # evaluation and prediction always take the uniform ones
    fps: float | None = Field(None, gt=0)  # decode frames 1/fps s apart (a window centred in the clip) instead of
    # spreading them over the whole clip
    max_file_mb: float = Field(512.0, gt=0)  # clips over these limits are refused (bad rows: see data.on_error)
    max_side: int = Field(4096, ge=1)  # pixels, width or height of the stream
    max_duration: float = Field(600.0, gt=0)  # seconds
    max_frames: int = Field(36_000, ge=1)  # frames in the stream

    @property
    def kept_frames(self) -> int:
        return self.decoded_frames or self.frames


class VideoDataConfig(DataConfig):
    """The data section of a video config: clips (a built-in set, or a table whose `video_column` holds video files
    — mp4, webm, avi, mov, mkv, gif — or folders of frame images) instead of images; `image_size` is the frame side."""

    name: str = "moving-shapes"
    video_column: str = "video"  # tables: the column of clip paths (relative paths resolve against the table's folder)
    image_size: int = Field(32, ge=8, le=1024)
    video: VideoSettings = Field(default_factory=VideoSettings)


class ModelConfig(Section):
    """The model is composed from registered components; sizes between them are derived at build time."""

    image_encoder: SerializeAsAny[ComponentConfig] | None = None  # None: the data has no images
    text_encoder: SerializeAsAny[ComponentConfig] | None = None  # None: the data has no text
    fusion: SerializeAsAny[ComponentConfig]
    head: SerializeAsAny[ComponentConfig] = Field(default_factory=lambda: HEADS.parse("mlp", "model.head"))
    modality_dropout: float = Field(0.0, ge=0.0, le=0.5)  # training only: per sample, a copy without its image (learned
    # placeholder instead) is added with this probability, else a copy without its text; never both (needs ≤ 0.5)

    @field_validator("image_encoder", mode="before")
    @classmethod
    def _image(cls, v: Any) -> Any:
        return None if v is None else IMAGE_ENCODERS.parse(v, "model.image_encoder")

    @field_validator("text_encoder", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return None if v is None else TEXT_ENCODERS.parse(v, "model.text_encoder")

    @field_validator("fusion", mode="before")
    @classmethod
    def _fusion(cls, v: Any) -> Any:
        return FUSIONS.parse(v, "model.fusion")

    @field_validator("head", mode="before")
    @classmethod
    def _head(cls, v: Any) -> Any:
        return HEADS.parse(v, "model.head")


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(512, ge=1)
    group_by_image: bool = False  # build batches from whole image groups (rows sharing an image, as in VQA), so
    # each distinct image is encoded once per batch: ~rows-per-image× less image-tower work
    optimizer: Literal["adam", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_fraction: float = Field(0.05, ge=0, lt=1)  # of all steps, linear warm-up
    grad_clip: float | None = Field(1.0, gt=0)  # max global grad norm; None = off
    early_stopping_patience: int | None = Field(None, ge=1)  # epochs without val improvement
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    threads: int | None = Field(None, ge=1)  # CPU threads; None = the free cores, re-chosen (vlfuse.threads)
    device: str = "auto"  # auto | cpu | cuda
    log_every: int = Field(20, ge=1)  # steps between TensorBoard train-loss points
    checkpoint_every: int | None = Field(None, ge=1)  # steps between mid-epoch checkpoints (resume continues the
    # epoch where it stopped); None: a checkpoint at the end of each epoch only
    # a frozen pretrained image tower (e.g. efficientnet_lite0 with frozen: true) is run once per image and its
    # features cached on disk (vlfuse.features); epochs then read them (no image augmentation in that case)
    cache_features: bool = True
    # bf16: the forward pass and loss under bfloat16 autocast (weights, gradients and optimizer state stay fp32);
    # on CPUs with AMX / AVX512-BF16 a large matmul-bound model (the LM bridge) trains ~1.4× faster
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 only where the hardware runs it natively


def _model_class_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the field at `loc` (for listing valid keys)."""
    cls: type[BaseModel] | None = root
    for part in loc[:-1]:
        if cls is None or not isinstance(part, str) or part not in cls.model_fields:
            return None
        annotation = cls.model_fields[part].annotation
        cls = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return cls


def validate_section(cls: type[BaseModel], raw: Any, source: str = "config") -> BaseModel:
    """Validate a raw mapping into `cls`; raise ConfigError naming every bad key (unknown keys with the valid ones)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return cls.model_validate(raw)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except ValidationError as err:
        lines = []
        for problem in err.errors():
            key = ".".join(str(p) for p in problem["loc"])
            if problem["type"] == "extra_forbidden":
                owner = _model_class_at(cls, problem["loc"])
                valid = ", ".join(owner.model_fields) if owner else "see the docs"
                lines.append(f"unknown key '{key}'; valid keys here: {valid}")
            elif problem["type"] == "missing":
                lines.append(f"missing required key '{key}'")
            else:
                lines.append(f"'{key}': {problem['msg']} (got {problem.get('input')!r})")
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=c` → (['a', 'b'], value parsed as YAML, so numbers, booleans, lists and null keep their types)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected the form key.path=value")
    key, value = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override '{text}': empty key")
    return key.strip().split("."), yaml.safe_load(value) if value.strip() else ""


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Return a copy of `raw` with dotted overrides applied (strings `a.b=c` or a {dotted_key: value} dict)."""
    import copy

    out = copy.deepcopy(raw)
    items = (
        [parse_override(o) for o in overrides]
        if isinstance(overrides, list)
        else [(k.split("."), v) for k, v in overrides.items()]
    )
    for path, value in items:
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override '{'.'.join(path)}': '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return out


def read_yaml(path: str | Path, what: str = "file") -> dict[str, Any]:
    """A YAML file's top-level mapping ({} when empty); ConfigError when it is missing or not valid YAML."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{what} '{path}' does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} '{path}' is not valid YAML: {err}") from None


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    return cfg.model_dump(mode="json")


def save_config(cfg: BaseModel, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
