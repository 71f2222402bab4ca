"""Tiny experiment configs shared by tests (importable as `tiny_configs`). They train in fp32 whatever the machine
(the default `precision: auto` would pick bf16 on a CPU with native bf16), so results do not depend on the CPU."""

from typing import Any

TINY_VQA: dict[str, Any] = {
    "seed": 0,
    "data": {
        "name": "easy-vqa",
        "image_size": 32,
        "limit": 400,
        "test_limit": 200,
        "max_text_length": 12,
        "augment": {"hflip": True},
    },
    "model": {
        "image_encoder": {"name": "cnn", "channels": [8, 16]},
        "text_encoder": {"name": "bow", "embed_dim": 16},
        "fusion": {"name": "product", "dim": 32},
        "head": {"name": "mlp", "hidden": [32], "dropout": 0.1},
    },
    "train": {"epochs": 2, "batch_size": 32, "eval_batch_size": 128, "lr": 0.003, "threads": 1, "precision": "fp32"},
}

TINY_RETRIEVAL: dict[str, Any] = {
    "task": "retrieval",
    "seed": 0,
    "data": {"name": "easy-vqa", "image_size": 32, "limit": 600, "test_limit": 200, "max_text_length": 12},
    "captions": {"captions_per_image": 2, "holdout": ["red circle"]},
    "model": {
        "image_encoder": {"name": "cnn", "channels": [8, 16]},
        "text_encoder": {"name": "bow", "embed_dim": 16},
        "embed_dim": 32,
    },
    "train": {"epochs": 2, "batch_size": 64, "eval_batch_size": 256, "lr": 0.003, "threads": 1, "precision": "fp32"},
}

TINY_BRIDGE: dict[str, Any] = {
    "task": "bridge",
    "data": {"name": "easy-vqa", "image_size": 32, "limit": 400, "test_limit": 40},  # limits count images
    "model": {
        "image_encoder": {"name": "efficientnet_lite0", "frozen": True, "resolution": 32},
        "projector": {"kind": "linear"},
        "lora": {"rank": 2},
    },
    "train": {"batch_size": 4, "threads": 1, "precision": "fp32"},
    "stages": [
        {"objective": "caption", "rows_per_epoch": 8, "train": {"epochs": 1, "lr": 0.002}},
        {"objective": "mixed", "rows_per_epoch": 8, "train": {"epochs": 1, "lr": 0.001}},
    ],
    "generation": {"max_new_tokens": 4},
    "eval": {"val_rows": 4, "test_questions": 4, "test_captions": 4, "batch_size": 4},
}

TINY_MODERATE: dict[str, Any] = {
    "task": "moderate",
    "seed": 0,
    "data": {"name": "marketplace", "image_size": 28, "channels": 1, "limit": 1500, "test_limit": 600},
    "model": {
        "image_encoder": {"name": "cnn", "channels": [8, 16]},
        "text_encoder": {"name": "bow", "embed_dim": 16},
        "fusion": {"name": "product", "dim": 32},
        "head": {"name": "mlp", "hidden": [32]},
        "modality_dropout": 0.1,
    },
    "train": {"epochs": 2, "batch_size": 64, "eval_batch_size": 256, "lr": 0.003, "threads": 1, "precision": "fp32"},
    "policy": {"labels": {
        "mismatch": {"target": {"max_fpr": 0.05}, "action": "review", "review_precision": 0.95},
        "prohibited": {"target": {"max_fpr": 0.05}, "action": "block", "review_precision": 0.95},
        "abusive": {"target": {"min_recall": 0.9}, "action": "block"},
    }},
}

# every registered task has a tiny config here, so the registry-parametrized tests (tests/test_tasks.py) cover it
# the photo task trains nothing: a ConSE tower at a small input size, scored on 24 Tux Paint test stamps
TINY_PHOTO: dict[str, Any] = {
    "task": "photo",
    "data": {"name": "tuxpaint", "image_size": 64, "test_limit": 24, "on_error": "skip", "max_text_length": 32},
    "model": {"image_encoder": {"name": "imagenet_conse", "resolution": 64, "top_k": 3},
              "text_encoder": {"name": "minilm"}, "embed_dim": 384, "projection": "none", "learn_temperature": False},
}  # fmt: skip

TINY_VIDEO: dict[str, Any] = {
    "task": "video",
    "seed": 0,
    "data": {"name": "moving-shapes", "image_size": 16, "options": {"clips": 60, "frames": 5}, "max_text_length": 12,
             "video": {"frames": 4, "decoded_frames": 5, "sampling": "random"}},
    "model": {
        "image_encoder": {"name": "cnn", "channels": [8, 16]},
        "temporal": {"name": "transformer", "dim": 16, "depth": 1, "heads": 2},
        "text_encoder": {"name": "bow", "embed_dim": 16},
        "fusion": {"name": "product", "dim": 32},
        "head": {"name": "mlp", "hidden": [32]},
    },
    "train": {"epochs": 2, "batch_size": 32, "eval_batch_size": 128, "lr": 0.003, "threads": 1, "precision": "fp32",
              "group_by_image": True},
}  # fmt: skip

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "classify": TINY_VQA, "retrieval": TINY_RETRIEVAL, "bridge": TINY_BRIDGE, "moderate": TINY_MODERATE,
    "photo": TINY_PHOTO, "video": TINY_VIDEO,
}
