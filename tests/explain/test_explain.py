"""Explanations: the Shapley maths, maps that must be zero, the pointing game and the randomization check on a real
(small) easy-VQA model, EMAP of a model without interactions, attention maps, the CLI end to end."""

import copy
import json
import re

import pytest
import torch
from live_server import easy_vqa_image
from tiny_configs import TINY_VQA

from vlfuse.api import load_run, train
from vlfuse.explain import attribution, checks
from vlfuse.explain.emap import additive_projection, emap_split, pair_logits
from vlfuse.explain.example import explain_example, write_explanation
from vlfuse.explain.modality import modality_shapley, token_patch_shapley
from vlfuse.explain.target import prepare_input

SMALL_VQA = {
    "seed": 0,
    "data": {"name": "easy-vqa", "image_size": 32, "limit": 4000, "test_limit": 300, "max_text_length": 12},
    "model": {
        "image_encoder": {"name": "cnn", "channels": [16, 32, 64], "downsample": "pool"},
        "text_encoder": {"name": "bow", "embed_dim": 32, "pool": "meanmax"},
        "fusion": {"name": "product", "dim": 64},
        "head": {"name": "mlp", "hidden": [64]},
    },
    "train": {"epochs": 4, "batch_size": 64, "lr": 0.003, "threads": 1, "precision": "fp32", "group_by_image": True},
}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A small easy-VQA model (32 px, 4,000 questions, ~10 s): good enough to point at shapes."""
    run_dir = tmp_path_factory.mktemp("explain") / "run"
    train(copy.deepcopy(SMALL_VQA), run_dir=run_dir)
    return load_run(run_dir)


@pytest.fixture(scope="module")
def tiny(tiny_run_dir):
    return load_run(tiny_run_dir)


def question_rows(run, prefix="what", count=20):
    split = run.split_data("test")
    rows = [r for r, t in enumerate(split.texts) if (t if isinstance(t, str) else t[0]).startswith(prefix)][:count]
    return [(split.images[split.image_index[r]], split.texts[r] if isinstance(split.texts[r], str)
             else split.texts[r][0]) for r in rows]  # fmt: skip


def test_shapley_values_sum_to_both_minus_none(tiny):
    x = prepare_input(tiny, easy_vqa_image(1), "what color is the shape?")
    for model in (tiny.model, checks.randomized_copy(tiny.model)):
        for target in range(len(tiny.label_names)):
            v = modality_shapley(model, tiny.objective, x.batch, torch.tensor([target]))
            assert float(v.image + v.text) == pytest.approx(float(v.both - v.none), abs=1e-6)
    share = explain_example(tiny, easy_vqa_image(1), "what color is the shape?", methods="gradcam").result["modality"]
    assert share["image_share"] + share["text_share"] == pytest.approx(1.0)
    assert share["efficiency_error"] < 1e-6 and share["removed_by"] == "placeholder"


def test_a_model_that_ignores_the_image_gets_zero_image_attribution(tiny):
    blind = copy.deepcopy(tiny)
    blind.model = copy.deepcopy(tiny.model)
    with torch.no_grad():
        blind.model.fusion.image_proj.weight.zero_()  # product fusion: tanh(0·image + b) — the image no longer counts
    x = prepare_input(blind, easy_vqa_image(2), "what shape is in the image?")
    unk = blind.tokenizer.unk_id
    v = modality_shapley(blind.model, blind.objective, x.batch, torch.tensor([x.target]))
    assert float(v.image) == pytest.approx(0.0, abs=1e-7) and float(v.image_share) == pytest.approx(0.0, abs=1e-6)
    assert float(v.text) != 0
    for method in ("gradcam", "ig", "occlusion"):
        heat = attribution.pixel_map(method, blind.model, blind.objective, x.batch, x.target)
        assert heat.abs().max() == pytest.approx(0.0, abs=1e-6), method
    shap = token_patch_shapley(blind.model, blind.objective, x.batch, x.target, unk_id=unk, samples=3)
    assert float(shap["patches"].abs().max()) == pytest.approx(0.0, abs=1e-7) and shap["image_share"] == 0.0
    words = attribution.word_occlusion(blind.model, blind.objective, x.batch, x.target, unk_id=unk)
    assert words.abs().max() > 0  # the text still matters


def test_pointing_game_on_easy_vqa_images(small_run):
    examples = question_rows(small_run, "what", 30)
    hits = random_hits = 0
    gen = torch.Generator().manual_seed(0)
    for image, text in examples:
        x = prepare_input(small_run, image, text)
        mask = checks.object_mask(x.raw_image)
        assert 0.02 < float(mask.float().mean()) < 0.5  # a shape on a flat background
        heat, delta = attribution.integrated_gradients(small_run.model, small_run.objective, x.batch, x.target)
        hits += checks.peak_inside(heat.abs(), mask)
        random_hits += checks.peak_inside(torch.rand(heat.shape, generator=gen), mask)
    assert hits >= 0.8 * len(examples), (hits, len(examples))
    assert hits > random_hits + 0.4 * len(examples)


def test_deletion_of_the_top_pixels_beats_random_pixels(small_run):
    examples = question_rows(small_run, "what", 20)
    passed = 0
    for image, text in examples:
        x = prepare_input(small_run, image, text)
        heat, _ = attribution.integrated_gradients(small_run.model, small_run.objective, x.batch, x.target)
        check = checks.deletion_check(small_run.model, small_run.objective, x.batch, x.target, heat.abs())
        assert check["probability"] == pytest.approx(x.probability, abs=1e-4)
        passed += check["passed"]
    assert passed >= 0.6 * len(examples)


def test_randomization_sanity_check_on_a_small_model(small_run):
    random_model = checks.randomized_copy(small_run.model, seed=1)
    changed = [not torch.equal(a, b) for a, b in zip(small_run.model.parameters(), random_model.parameters(),
                                                     strict=True)]  # fmt: skip
    assert all(changed)
    rhos = []
    for image, text in question_rows(small_run, "what", 10):
        x = prepare_input(small_run, image, text)
        trained = attribution.grad_cam(small_run.model, small_run.objective, x.batch, x.target)
        again = attribution.grad_cam(small_run.model, small_run.objective, x.batch, x.target)
        assert checks.spearman(trained, again) == pytest.approx(1.0)
        rhos.append(checks.spearman(trained, attribution.grad_cam(random_model, small_run.objective, x.batch,
                                                                  x.target)))  # fmt: skip
    assert sum(rhos) / len(rhos) <= 0.5, rhos


def test_spearman_handles_ties_and_constants():
    assert checks.spearman(torch.tensor([1.0, 2, 3]), torch.tensor([10.0, 20, 30])) == pytest.approx(1.0)
    assert checks.spearman(torch.tensor([1.0, 2, 3]), torch.tensor([3.0, 2, 1])) == pytest.approx(-1.0)
    assert checks.spearman(torch.tensor([1.0, 1, 2]), torch.tensor([5.0, 5, 9])) == pytest.approx(1.0)
    assert checks.spearman(torch.ones(4), torch.arange(4.0)) == 0.0


def test_emap_of_late_fusion_is_exact_and_of_product_fusion_brute_force(tmp_path):
    config = copy.deepcopy(TINY_VQA)
    config["model"]["fusion"] = {"name": "late", "hidden": [8]}
    train(config, run_dir=tmp_path / "late")
    late = load_run(tmp_path / "late")
    report = emap_split(late.model, late.objective, late.split_data("test"), late.preprocess, chunk=64)
    assert report["emap_gap"] == 0.0 and report["rows"] == 200  # additive logits are their own projection
    grid = torch.randn(5, 5, 3)
    proj = additive_projection(grid)
    for a in range(5):
        for b in range(5):
            manual = grid[a].mean(0) + grid[:, b].mean(0) - grid.mean((0, 1))
            assert torch.allclose(proj[a, b], manual, atol=1e-6)


def test_pair_logits_match_the_model_on_real_pairs(tiny):
    split = tiny.split_data("test").subset(torch.arange(12))
    from vlfuse.data.loader import BatchLoader

    batch = next(iter(BatchLoader(split, tiny.preprocess, batch_size=12, shuffle=False)))
    with torch.no_grad():
        image, text = tiny.model.encode(batch)
        grid = pair_logits(tiny.model, image, text, pairs_per_call=50)  # (12, 12, K) in several calls
        assert torch.allclose(grid.diagonal().T, tiny.model(batch), atol=1e-5)


def test_attention_maps_of_an_attention_fusion(tmp_path):
    config = copy.deepcopy(TINY_VQA)
    config["model"]["fusion"] = {"name": "attention", "dim": 8, "heads": 2}
    config["train"]["epochs"] = 1
    train(config, run_dir=tmp_path / "attn")
    run = load_run(tmp_path / "attn")
    x = prepare_input(run, easy_vqa_image(0), "what color is the shape?")
    maps = attribution.attention_maps(run.model, x.batch)
    assert maps
    weights = next(iter(maps.values()))  # (L, N)
    assert weights.shape == (x.batch.text_ids.shape[1], 8 * 8)  # 32 px → two 2× stages → 8 × 8 tokens
    assert torch.allclose(weights[x.token_positions].sum(-1), torch.ones(len(x.token_positions)), atol=1e-5)
    result = explain_example(run, easy_vqa_image(0), "what color is the shape?", methods="attention").result
    assert len(result["pixels"]["attention"]["per_token"]) == len(x.tokens)
    skipped = explain_example(load_run(tmp_path / "attn"), easy_vqa_image(0), "what color?", methods="ig")
    assert "ig" in skipped.maps


def test_cli_explain_writes_pictures_json_and_page(cli, tiny_run_dir, tmp_path):
    out = tmp_path / "why"
    result = cli("explain", tiny_run_dir, "--image", easy_vqa_image(4), "--text", "what shape is in the image?",
                 "--method", "gradcam,ig,occlusion,attention", "--sanity", "--out", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "explanation.json").read_text())
    run = load_run(tiny_run_dir)
    expected = run.predict(image=easy_vqa_image(4), text="what shape is in the image?", top_k=1)[0]
    assert data["label"] == expected.label and data["probability"] == pytest.approx(expected.probability, abs=1e-5)
    for method in ("gradcam", "ig", "occlusion"):
        assert (out / f"{method}.png").stat().st_size > 0
        entry = data["pixels"][method]
        assert len(entry["map"]) == run.cfg.data.image_size and -1 <= entry["randomization_spearman"] <= 1
        assert entry["deletion"]["passed"] in (True, False)
    assert "skipped" in data["pixels"]["attention"]  # product fusion has no attention
    assert data["words"]["tokens"] == run.tokenizer.tokenize("what shape is in the image?")
    page = (out / "index.html").read_text()
    assert "gradcam.png" in page and "deletion check" in page and 'class="tok"' in page
    assert "modality (exact Shapley)" in result.stdout


def test_cli_explain_errors_name_the_problem(cli, tiny_run_dir, tmp_path):
    bad = cli("explain", tiny_run_dir, "--image", easy_vqa_image(0), "--text", "what?", "--method", "lime")
    assert bad.returncode == 2 and "unknown --method 'lime'" in bad.stderr
    wrong = cli("explain", tiny_run_dir, "--image", easy_vqa_image(0), "--text", "what?", "--label", "purple")
    assert wrong.returncode == 2 and "'purple' is not one of the run's labels" in wrong.stderr


def test_cli_evaluate_modality_share_and_emap(cli, tiny_run_dir):
    result = cli("evaluate", tiny_run_dir, "--modality-share", "--emap", "--limit", "60", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    share = data["modality_share"]["all"]
    assert share["rows"] == 60 and 0 <= share["image_share_mean"] <= 1
    assert sum(g["rows"] for g in data["modality_share"]["groups"].values()) == 60
    assert data["emap"]["rows"] == 60
    assert data["emap"]["emap_gap"] == pytest.approx(data["emap"]["accuracy"] - data["emap"]["emap_accuracy"])
    assert (tiny_run_dir / "modality_share.json").is_file() and (tiny_run_dir / "emap.json").is_file()
    shap = cli("evaluate", tiny_run_dir, "--mm-shap", "--limit", "5", "--json")
    assert shap.returncode == 0, shap.stderr
    mm = json.loads(shap.stdout)["mm_shap"]
    assert mm["all"]["rows"] == 5 and 0 <= mm["all"]["image_share_mean"] <= 1
    assert json.loads((tiny_run_dir / "mm_shap.json").read_text())["all"]["rows"] == 5
    bridge = cli("evaluate", "easy-vqa-bridge", "--emap")  # refused before anything loads
    message = re.sub(r"[│╭╮╰╯─\s]+", " ", bridge.stderr)
    assert bridge.returncode == 2 and "'easy-vqa-bridge' is a 'bridge' run; --modality-share, --emap" in message


def test_write_explanation_without_text(tiny, tmp_path):
    explanation = explain_example(tiny, easy_vqa_image(0), None, methods="gradcam")
    assert "modality" not in explanation.result and "words" not in explanation.result
    page = write_explanation(explanation, tmp_path / "out")
    assert (tmp_path / "out" / "gradcam.png").is_file() and "Modality" not in page.read_text()


def test_a_moderation_run_is_explained_per_label(trained_runs, cli, tmp_path):
    run_dir = trained_runs("moderate")[0]
    run = load_run(run_dir)
    split = run.split_data("test")
    image, text = split.images[split.image_index[0]], split.texts[0]
    for label in run.scores:
        result = explain_example(run, image, text, methods="gradcam,ig", label=label).result
        assert result["label"] == label
        assert result["calibrated_probability"] == pytest.approx(
            float(run.predict_proba([image], [text])[0, run.label_names.index(label)])
        )
        mod = result["modality"]
        assert mod["image"] + mod["text"] == pytest.approx(mod["f_both"] - mod["f_none"], abs=1e-6)
    from PIL import Image

    path = tmp_path / "listing.png"
    Image.fromarray(image[0].numpy()).save(path)
    done = cli("explain", run_dir, "--image", path, "--text", text, "--label", "abusive", "--out", tmp_path / "why")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "why" / "explanation.json").read_text())["label"] == "abusive"
