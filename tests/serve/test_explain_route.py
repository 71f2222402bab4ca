"""POST /v1/explain on a real server: the same numbers as `explain_example`, an ONNX-served run explained through its
PyTorch run, clear errors; and a bridge explanation of a generated answer."""

import base64
import io
import json
import re
import shutil

import httpx
import pytest
from live_server import easy_vqa_image, live_server
from PIL import Image

from vlfuse.api import load_run
from vlfuse.explain.example import explain_example
from vlfuse.serve import create_app, load_predictor


def post_explain(client, image, text, **data):
    files = {"image": (image.name, image.read_bytes(), "image/png")} if image is not None else None
    return client.post("/v1/explain", files=files, data={**({"text": text} if text else {}), **data})


def test_explain_route_matches_the_library(tiny_run_dir):
    run = load_run(tiny_run_dir)
    with live_server(create_app(run)) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert "explain" in client.get("/v1/info").json()["capabilities"]
        image, text = easy_vqa_image(5), "is there a blue shape?"
        response = post_explain(client, image, text, method="occlusion")
        assert response.status_code == 200, response.text
        body = response.json()
        expected = explain_example(run, image, text, methods="occlusion").result
        assert body["label"] == expected["label"]
        assert body["modality"]["image_share"] == pytest.approx(expected["modality"]["image_share"], abs=1e-6)
        assert body["words"]["tokens"] == expected["words"]["tokens"]
        assert body["words"]["ig"] == pytest.approx(expected["words"]["ig"], abs=1e-4)
        assert body["pixels"]["deletion"]["passed"] == expected["pixels"]["occlusion"]["deletion"]["passed"]
        png = base64.b64decode(body["pixels"]["overlay_png"].partition(",")[2])
        assert Image.open(io.BytesIO(png)).size == (4 * run.cfg.data.image_size,) * 2
        only_text = post_explain(client, None, text)
        assert only_text.status_code == 200 and only_text.json()["pixels"] is None
        assert only_text.json()["modality"] is None
        bad = post_explain(client, image, text, method="lime")
        assert bad.status_code == 422 and "method" in bad.text


def test_an_onnx_served_run_is_explained_with_its_pytorch_run(tiny_run_dir, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run_dir)
    predictor = load_predictor(run_dir)  # auto: exports and serves ONNX
    assert predictor.backend == "onnx"
    with live_server(create_app(predictor)) as url, httpx.Client(base_url=url, timeout=60) as client:
        response = post_explain(client, easy_vqa_image(6), "what shape is in the image?", method="gradcam")
        assert response.status_code == 200, response.text
        assert response.json()["label"] == load_run(run_dir).predict(
            image=easy_vqa_image(6), text="what shape is in the image?", top_k=1)[0].label  # fmt: skip


def test_bridge_explanation_per_generated_token(tiny_bridge, tmp_path):
    from vlfuse.bridge.explain import explain_answer, write_answer_explanation

    explanation = explain_answer(tiny_bridge, easy_vqa_image(0), "what shape is in the image?")
    r = explanation.result
    assert r["answer"] == tiny_bridge.ask(tiny_bridge.load_images([easy_vqa_image(0)]),
                                          ["what shape is in the image?"])[0]  # fmt: skip
    assert len(r["tokens"]) == len(r["token_logprob"]) == len(explanation.maps) == len(r["attention_over_cells"])
    for row in r["attention_over_cells"]:  # a share of each token's attention, over the visual tokens only
        assert 0 < sum(row) <= 1 + 1e-5
    assert r["image_contribution"] == pytest.approx(sum(r["token_logprob"]) - sum(r["token_logprob_without_image"]),
                                                    abs=1e-4)  # fmt: skip
    page = write_answer_explanation(explanation, tmp_path / "bridge")
    assert (tmp_path / "bridge" / "token-0.png").is_file() and "Deletion check" in page.read_text()


def test_cli_explains_a_bridge_answer(cli, tiny_bridge_dir, tmp_path):
    out = tmp_path / "why"
    done = cli("explain", tiny_bridge_dir, "--image", easy_vqa_image(1), "--question", "what color is the shape?",
               "--out", out)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((out / "explanation.json").read_text())
    assert data["question"] == "what color is the shape?" and len(data["tokens"]) == len(data["attention_over_cells"])
    assert "deletion check" in done.stdout and (out / "answer.png").is_file()
    missing = cli("explain", tiny_bridge_dir, "--image", easy_vqa_image(1))
    message = re.sub(r"[│╭╮╰╯─\s]+", " ", missing.stderr)  # the usage error's box, unwrapped
    assert missing.returncode == 2 and "a bridge explanation needs --image and --question" in message
