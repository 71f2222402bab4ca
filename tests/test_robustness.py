"""Missing modalities: placeholders, modality dropout, predicting without an image or a text (API and CLI), and the
robustness report (`vlfuse evaluate --robustness`)."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys

import pytest
import torch
from tiny_configs import TINY_VQA

from vlfuse.classify.robustness import CONDITIONS, corrupt_images, corrupt_texts
from vlfuse.classify.run import ClassifyRun
from vlfuse.config import ModelConfig
from vlfuse.model import add_missing_modality_rows, build_model, count_parameters
from vlfuse.task import load_run, validate_config
from vlfuse.train.runner import run_training
from vlfuse.types import Batch

SIZES = {"in_channels": 3, "image_size": 16, "vocab_size": 20, "pad_id": 0, "max_length": 6}


def tiny_model(fusion: str = "attention", modality_dropout: float = 0.0, seed: int = 0):
    torch.manual_seed(seed)
    cfg = ModelConfig(
        image_encoder={"name": "cnn", "channels": [4, 8]},
        text_encoder={"name": "bow", "embed_dim": 8},
        fusion={"name": fusion, **({"dim": 8, "heads": 2} if fusion == "attention" else {})},
        head={"name": "mlp", "hidden": [8], "dropout": 0.2},
        modality_dropout=modality_dropout,
    )
    return build_model(cfg, num_outputs=3, **SIZES)


def random_batch(n: int = 4) -> Batch:
    g = torch.Generator().manual_seed(1)
    mask = torch.arange(6) < torch.randint(1, 7, (n, 1), generator=g)  # (n, 6)
    ids = torch.randint(1, 20, (n, 6), generator=g).masked_fill(~mask, 0)
    return Batch(image=torch.randn(n, 3, 16, 16, generator=g), text_ids=ids, text_mask=mask)


@pytest.mark.parametrize("fusion", ["attention", "concat", "film"])
def test_placeholders_stand_in_for_a_missing_modality(fusion):
    model = tiny_model(fusion, modality_dropout=0.3).eval()
    with torch.no_grad():  # give the placeholders non-zero values, as training would
        for p in model.placeholders.parameters():
            p.normal_()
    b = random_batch()
    with torch.no_grad():
        complete = model(b)
        no_image = model(Batch(image=None, text_ids=b.text_ids, text_mask=b.text_mask))
        no_text = model(Batch(image=b.image, text_ids=None, text_mask=None))
        present = torch.tensor([True, False, True, False])
        image = torch.where(present[:, None, None, None], b.image, torch.randn_like(b.image))  # absent: any pixels
        mixed = model(Batch(image, b.text_ids, b.text_mask, image_present=present))
    for out in (no_image, no_text):
        assert out.shape == (4, 3) and torch.isfinite(out).all()
        assert not torch.allclose(out, complete)
    torch.testing.assert_close(mixed[present], complete[present])
    torch.testing.assert_close(mixed[~present], no_image[~present])  # per-row and whole-batch placeholders agree


def test_modality_dropout_adds_copies_and_never_drops_both():
    g = torch.Generator().manual_seed(0)
    n, images = 20_000, torch.randn(5, 3, 4, 4)
    image_index = torch.randint(0, 5, (n,), generator=g)  # (B,) rows share 5 distinct images
    ids = torch.randint(1, 20, (n, 3), generator=g)
    text_present = torch.arange(n) % 10 != 0  # (B,) every tenth row already has no text
    batch = Batch(images, ids, ids > 0, label=torch.arange(n), image_index=image_index, text_present=text_present)
    torch.manual_seed(0)
    out = add_missing_modality_rows(batch, 0.3)
    assert torch.equal(out.image, images)  # the image tower still sees each distinct image once
    assert torch.equal(out.label[:n], batch.label) and torch.equal(out.text_ids[:n], ids)  # originals first, intact
    assert out.image_present[:n].all() and torch.equal(out.text_present[:n], text_present)
    copies = out.label[n:]  # (E,) the source row of every copy
    assert torch.equal(out.text_ids[n:], ids[copies]) and torch.equal(out.image_index[n:], image_index[copies])
    assert not (~out.image_present & ~out.text_present).any()  # never both missing
    assert text_present[copies].all()  # a row without text is never copied (it would lose its image too)
    complete = int(text_present.sum())
    assert abs(int((~out.image_present).sum()) / complete - 0.3) < 0.02
    assert abs(int((~out.text_present[n:]).sum()) / complete - 0.3) < 0.02
    assert add_missing_modality_rows(batch, 0.0) is batch
    with pytest.raises(Exception, match="modality_dropout"):
        tiny_model(modality_dropout=0.6)


def test_zero_dropout_keeps_logits_parameters_and_rng_unchanged():
    model = tiny_model(modality_dropout=0.0).train()
    rng_after_build = torch.get_rng_state()
    learned = tiny_model(modality_dropout=0.3)
    assert torch.equal(rng_after_build, torch.get_rng_state())  # zero-initialised placeholders draw nothing
    for (name, a), (_, b) in zip(model.named_parameters(), learned.named_parameters(), strict=False):
        assert torch.equal(a, b), name  # same init with and without dropout
    parts = (model.image_encoder, model.text_encoder, model.fusion, model.head)
    assert count_parameters(model) == sum(count_parameters(m) for m in parts)  # placeholders are buffers here
    extra = sum(p.numel() for p in learned.placeholders.parameters())
    assert extra > 0 and count_parameters(learned) == count_parameters(model) + extra
    batch = random_batch()
    torch.manual_seed(5)
    got = model(batch)
    torch.manual_seed(5)
    image, text = model.image_encoder(batch.image), model.text_encoder(batch.text_ids, batch.text_mask)
    expected = model.head(model.fusion(image, text))  # the forward as it was before placeholders existed
    assert torch.equal(got, expected)


def test_weights_saved_before_placeholders_still_load():
    model = tiny_model()
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("placeholders.")}
    tiny_model(seed=1).load_state_dict(old)  # strict: the hook keeps the (zero) placeholders
    learned = tiny_model(modality_dropout=0.3)
    learned.load_state_dict(old)
    assert all((p == 0).all() for p in learned.placeholders.parameters())


def test_corruptions_are_deterministic_and_change_inputs():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 32, 32), generator=g, dtype=torch.uint8)
    for kind in ("noise", "blur", "occlusion"):
        a, b = corrupt_images(images, kind, seed=0), corrupt_images(images, kind, seed=0)
        assert a.dtype == torch.uint8 and a.shape == images.shape and torch.equal(a, b)
        assert not torch.equal(a, images)
    occluded = corrupt_images(torch.full((5, 3, 32, 32), 200, dtype=torch.uint8), "occlusion", seed=0)
    assert ((occluded == 0).float().mean(dim=(1, 2, 3)) == 0.25).all()  # a 16×16 square of 32×32
    texts = ["what color is the shape in this image", "is there a blue circle [SEP] second column here"] * 10
    for kind, p in (("drop", 0.3), ("shuffle", 0.3), ("typos", 0.2)):
        a, b = corrupt_texts(texts, kind, seed=0, p=p), corrupt_texts(texts, kind, seed=0, p=p)
        assert (
            a == b
            and len(a) == len(texts)
            and all(len(row) == len(t.split(" [SEP] ")) for row, t in zip(a, texts, strict=True))
        )
        assert [" [SEP] ".join(row) for row in a] != texts
        assert a != corrupt_texts(texts, kind, seed=1, p=p)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = copy.deepcopy(TINY_VQA)
    cfg["model"]["modality_dropout"] = 0.3
    cfg["data"]["test_limit"] = 60
    cfg["train"]["epochs"] = 1
    run = tmp_path_factory.mktemp("robust") / "run"
    run_training(validate_config(cfg), run)
    return run


def test_training_with_modality_dropout_teaches_the_placeholders(trained_run):
    placeholders = load_run(trained_run).model.placeholders
    assert placeholders.learned
    for name in ("image", "text"):  # the fusion reads pooled vectors or tokens: one of each pair must have moved
        pooled, token = getattr(placeholders, f"{name}_pooled"), getattr(placeholders, f"{name}_token")
        assert (pooled != 0).any() or (token != 0).any(), name


@pytest.fixture(scope="module")
def image_path():
    from easy_vqa import get_test_image_paths

    return get_test_image_paths()[0]


def test_predict_without_image_or_text_python_api(trained_run, image_path, caplog):
    run = load_run(trained_run)
    with caplog.at_level(logging.WARNING):
        text_only = run.predict(text="what color is the shape?", top_k=2)
        image_only = run.predict(image=image_path, top_k=2)
    assert len(text_only) == len(image_only) == 2 and not caplog.records  # learned placeholders: no warning
    both = run.predict_proba([image_path, image_path, None], ["what shape is it?", None, "what shape is it?"])
    assert both.shape == (3, len(run.label_names)) and torch.allclose(both.sum(1), torch.ones(3))
    alone = run.predict_proba(None, ["what shape is it?"])
    torch.testing.assert_close(both[2], alone[0])  # a missing row is the same whether batched or alone
    assert not torch.allclose(both[0], both[1]) and not torch.allclose(both[0], both[2])
    with pytest.raises(ValueError, match="image, a text or both"):
        run.predict_proba([None], [None])


def test_untrained_placeholder_warns(trained_run, caplog):
    run = load_run(trained_run)
    cfg = run.cfg.model_copy(deep=True)
    cfg.model.modality_dropout = 0.0
    sizes = {"in_channels": 3, "image_size": cfg.data.image_size, "vocab_size": run.tokenizer.vocab_size,
             "pad_id": run.tokenizer.pad_id, "max_length": cfg.data.max_text_length}  # fmt: skip
    model = build_model(cfg.model, num_outputs=run.objective.num_outputs, **sizes).eval()
    untrained = ClassifyRun(run.path, cfg, run.objective, run.label_names, model, run.tokenizer)
    with caplog.at_level(logging.WARNING):
        assert len(untrained.predict(text="what color is the shape?")) == 3
        untrained.predict(text="what shape is it?")  # the same missing input again: not warned again
    assert "untrained" in caplog.text
    assert [r.getMessage().startswith("no image given") for r in caplog.records] == [True]  # once per run


def vlfuse(*args):
    proc = subprocess.run([sys.executable, "-m", "vlfuse.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_predict_without_image_or_text_cli(trained_run, image_path):
    labels = json.loads((trained_run / "labels.json").read_text())["label_names"]
    for given in (["--text", "what color is the shape?"], ["--image", image_path]):
        preds = json.loads(vlfuse("predict", trained_run, *given, "--top-k", "2", "--json").stdout)
        assert len(preds) == 2 and all(p["label"] in labels and 0 < p["probability"] <= 1 for p in preds)


def test_evaluate_robustness_cli_writes_table_json_and_plot(trained_run):
    rows = json.loads(vlfuse("evaluate", trained_run, "--robustness", "--json").stdout)
    assert [r["condition"] for r in rows] == list(CONDITIONS)
    assert rows[0]["condition"] == "complete" and rows[0]["drop_points"] == 0.0
    assert all(0.0 <= r["value"] <= 1.0 and r["metric"] == "accuracy" for r in rows)
    saved = json.loads((trained_run / "robustness.json").read_text())
    assert saved["rows"] == rows and saved["split"] == "test" and saved["samples"] == 60
    table = (trained_run / "robustness.md").read_text()
    assert all(f"| {name} |" in table for name in CONDITIONS)
    assert (trained_run / "plots" / "robustness.png").stat().st_size > 1000


def test_resume_with_modality_dropout_is_exact(tmp_path, tiny_config):
    tiny_config["model"]["modality_dropout"] = 0.3
    tiny_config["data"].update(limit=200, test_limit=40)
    cfg = validate_config(tiny_config)
    run_training(cfg, tmp_path / "full")
    run_training(cfg, tmp_path / "part", stop_after_epochs=1)
    run_training(cfg, tmp_path / "part", resume=True)
    full, part = ((tmp_path / r / "test_metrics.json").read_text() for r in ("full", "part"))
    assert json.loads(part) == json.loads(full)
