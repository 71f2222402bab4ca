"""The REST API on a real uvicorn server: predictions match the Python API, /v1/info, /healthz, OpenAPI, the page."""

import httpx
import pytest
import torch
from live_server import easy_vqa_image, live_server

from vlfuse.api import load_run
from vlfuse.data.images import load_image
from vlfuse.serve import create_app


@pytest.fixture(scope="module")
def served(tiny_run_dir):
    run = load_run(tiny_run_dir)
    with live_server(create_app(run)) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, run


def post_image(client, path, text=None, **data):
    files = {"image": (path.name, path.read_bytes(), "image/png")}
    return client.post("/v1/predict", files=files, data={**({"text": text} if text else {}), **data})


def test_healthz(served):
    client, _ = served
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_predict_matches_python_api(served):
    client, run = served
    image, question = easy_vqa_image(3), "what color is the shape?"
    response = post_image(client, image, question, top_k="4")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["used"] == {"image": True, "text": True} and body["backend"] == "torch"
    expected = run.predict_proba([load_image(image, size=run.cfg.data.image_size)], [question])[0]  # (K,)
    top = expected.argsort(descending=True)[:4]
    assert [p["label"] for p in body["predictions"]] == [run.label_names[i] for i in top]
    got = torch.tensor([p["probability"] for p in body["predictions"]])
    assert torch.allclose(got, expected[top], atol=1e-5)


def test_predict_with_either_input_missing(served):
    client, run = served
    text_only = client.post("/v1/predict", data={"text": "what shape is in the image?", "top_k": "2"})
    assert text_only.status_code == 200, text_only.text
    assert text_only.json()["used"] == {"image": False, "text": True}
    expected = run.predict(text="what shape is in the image?", top_k=2)
    assert [p["label"] for p in text_only.json()["predictions"]] == [p.label for p in expected]
    image_only = post_image(client, easy_vqa_image(1))
    assert image_only.status_code == 200, image_only.text
    assert image_only.json()["used"] == {"image": True, "text": False}
    assert len(image_only.json()["predictions"]) == min(5, len(run.label_names))  # the default top_k


def test_info_describes_the_run(served):
    client, run = served
    post_image(client, easy_vqa_image(0), "is there a circle?")
    info = client.get("/v1/info").json()
    assert info["task"] == "classify" and info["objective"] == "multiclass" and info["labels"] == run.label_names
    assert info["metrics"]["test"]["accuracy"] == pytest.approx(run.metrics["test"]["accuracy"])
    assert {"vlfuse", "torch", "fastapi", "python"} <= set(info["versions"])
    assert info["capabilities"] == ["predict", "explain"]
    assert info["inputs"] == {"image": True, "text": True, "either_may_be_missing": True, "image_size": 32}
    assert info["limits"]["max_batch"] == 32 and "PNG" in info["limits"]["formats"]
    assert info["batching"]["predict"]["requests"] >= 1


def test_openapi_describes_predict(served):
    client, _ = served
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/predict"]["post"]
    ref = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].split("/")[-1]
    fields = spec["components"]["schemas"][ref]["properties"]
    assert set(fields) == {"image", "text", "top_k"}
    assert "maxLength" in str(fields["text"]) and "1000" in str(fields["text"])
    assert {"200", "400", "413", "415", "422"} <= set(operation["responses"])
    assert {"/healthz", "/v1/info"} <= set(spec["paths"])


def test_web_page_and_assets_are_served(served):
    client, _ = served
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="predict-form"' in page.text and "/static/app.js" in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "/v1/predict" in script.text
