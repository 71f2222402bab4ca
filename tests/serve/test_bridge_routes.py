"""POST /v1/ask and /v1/caption from a real language bridge (SmolLM2 inside, untrained projector) on a real uvicorn
server: answers match the Python API, bad requests get clear 4xx JSON, concurrent requests share generate calls, a
bridge-only server has no /v1/predict, and `vlfuse serve BRIDGE_RUN` recognises the bridge."""

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from live_server import easy_vqa_image, free_port, live_server

from vlfuse.api import load_run
from vlfuse.serve import ServeLimits, create_app

LIMITS = ServeLimits(max_text_chars=120, max_batch=8, max_wait_ms=100)
MULTIPART = {"content-type": "multipart/form-data; boundary=xyz"}
EMPTY_FILE_INPUT = (  # what a browser sends for a form whose file input was left empty
    b'--xyz\r\nContent-Disposition: form-data; name="image"; filename=""\r\n'
    b"Content-Type: application/octet-stream\r\n\r\n\r\n"
    b'--xyz\r\nContent-Disposition: form-data; name="question"\r\n\r\nwhat shape?\r\n--xyz--\r\n'
)


@pytest.fixture(scope="module")
def client(tiny_bridge):
    with live_server(create_app(options={"bridge": tiny_bridge}, limits=LIMITS)) as url:
        with httpx.Client(base_url=url, timeout=120) as client:
            yield client


def upload(path):
    return {"image": (path.name, path.read_bytes(), "image/png")}


def test_ask_and_caption_answer_in_words_as_the_python_api_does(client, tiny_bridge):
    image, question = easy_vqa_image(2), "what color is the shape?"
    pixels = tiny_bridge.load_images([image])  # (1, C, H, W) uint8
    asked = client.post("/v1/ask", files=upload(image), data={"question": question})
    assert asked.status_code == 200, asked.text
    body = asked.json()
    assert set(body) == {"answer", "seconds", "ood", "warning"} and body["seconds"] >= 0
    assert body["ood"] is None and body["warning"] is None  # this run has no OOD detector
    assert isinstance(body["answer"], str) and body["answer"].strip()
    assert body["answer"] == tiny_bridge.ask(pixels, [question])[0]
    captioned = client.post("/v1/caption", files=upload(image))
    assert captioned.status_code == 200, captioned.text
    assert captioned.json()["caption"].strip()
    assert captioned.json()["caption"] == tiny_bridge.caption(pixels)[0]


CASES = {
    # name: (path, request arguments, status, code, field, words the message contains)
    "missing question": ("/v1/ask", {"files": upload(easy_vqa_image(0))}, 422, "invalid_field", "question",
                         ["field 'question'", "is required"]),
    "empty question": ("/v1/ask", {"files": upload(easy_vqa_image(0)), "data": {"question": "  "}}, 422, "empty_text",
                       "question", ["field 'question' is empty"]),
    "question too long": ("/v1/ask", {"files": upload(easy_vqa_image(0)), "data": {"question": "why " * 31}}, 422,
                          "text_too_long", "question", ["field 'question'", "at most 120 characters"]),
    "missing image": ("/v1/ask", {"data": {"question": "what shape?"}}, 422, "invalid_field", "image",
                      ["field 'image'", "is required"]),
    "empty file input": ("/v1/ask", {"content": EMPTY_FILE_INPUT, "headers": MULTIPART}, 422, "invalid_field",
                         "image", ["field 'image'", "is required"]),
    "not an image": ("/v1/ask", {"files": {"image": ("notes.txt", b"hello", "text/plain")},
                                 "data": {"question": "what?"}}, 415, "unsupported_image", "image",
                     ["'notes.txt' is not an image"]),
    "JSON body": ("/v1/ask", {"json": {"question": "what?"}}, 415, "unsupported_media_type", None,
                  ["application/json", "multipart/form-data", "'image'", "'question'"]),
    "caption without image": ("/v1/caption", {"data": {"x": "1"}}, 422, "invalid_field", "image",
                              ["field 'image'", "is required"]),
    "caption of a text file": ("/v1/caption", {"files": {"image": ("a.txt", b"words", "text/plain")}}, 415,
                               "unsupported_image", "image", ["'a.txt' is not an image"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_requests_get_clear_4xx_json(client, case):
    path, request, status, code, field, words = CASES[case]
    response = client.post(path, **request)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error.get("field") == field
    for word in words:
        assert word in error["message"], error["message"]


def test_concurrent_requests_share_generate_calls_and_match_one_at_a_time(client, tiny_bridge):
    questions = [
        "what color is the shape?",
        "is there a circle in this image, yes or no?",
        "what shape?",
        "does the image contain a blue shape or a red one?",
        "shape?",
        "what is the color of the shape?",
    ]
    requests = [("/v1/ask", easy_vqa_image(i), q) for i, q in enumerate(questions)]
    requests += [("/v1/caption", easy_vqa_image(7), None), ("/v1/caption", easy_vqa_image(8), None)]
    expected = []  # one at a time through the Python API
    for _, image, question in requests:
        pixels = tiny_bridge.load_images([image])
        expected.append(tiny_bridge.ask(pixels, [question])[0] if question else tiny_bridge.caption(pixels)[0])

    def send(request):
        path, image, question = request
        response = client.post(path, files=upload(image), data={"question": question} if question else None)
        assert response.status_code == 200, response.text
        return response.json()["answer" if question else "caption"]

    before = client.get("/v1/info").json()["batching"]["bridge"]
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        got = list(pool.map(send, requests))
    after = client.get("/v1/info").json()["batching"]["bridge"]
    assert got == expected  # left-padded rows of different prompts answer as they do alone
    assert after["requests"] - before["requests"] == len(requests)
    assert after["batches"] - before["batches"] < len(requests) and after["largest_batch"] > 1, after
    assert after["largest_batch"] <= LIMITS.max_batch


def test_a_bridge_only_server_describes_itself_and_has_no_predict(client, tiny_bridge_dir):
    info = client.get("/v1/info").json()
    assert info["task"] == "bridge" and info["capabilities"] == ["ask", "caption"]
    assert info["run"] == tiny_bridge_dir.name and info["labels"] == []
    assert info["inputs"]["image_size"] == 32 and info["limits"]["max_text_chars"] == 120
    assert info["bridge"]["language_model"] == "smollm2-135m-instruct"
    assert info["bridge"]["caption_prompt"] == "Describe the image." and "transformers" in info["versions"]
    missing = client.post("/v1/predict", data={"text": "what shape?"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/ask", "/v1/caption", "/v1/info"} <= set(paths) and "/v1/predict" not in paths
    assert "question" in client.get("/static/app.js").text


def test_a_classifier_and_a_bridge_together(tiny_run_dir, tiny_bridge):
    app = create_app(load_run(tiny_run_dir), options={"bridge": tiny_bridge})
    with live_server(app) as url, httpx.Client(base_url=url, timeout=120) as client:
        info = client.get("/v1/info").json()
        assert info["capabilities"] == ["predict", "explain", "ask", "caption"] and info["task"] == "classify"
        image = easy_vqa_image(1)
        assert client.post("/v1/predict", files=upload(image), data={"text": "what shape?"}).status_code == 200
        assert client.post("/v1/caption", files=upload(image)).json()["caption"].strip()


def test_create_app_refuses_nothing_to_serve_and_unknown_options(tiny_bridge):
    with pytest.raises(ValueError, match="nothing to serve"):
        create_app()
    with pytest.raises(ValueError, match=r"unknown serve option\(s\) \['brdige'\]"):
        create_app(options={"brdige": tiny_bridge})


def vlfuse(*args):
    return subprocess.run([sys.executable, "-m", "vlfuse.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_cli_serves_a_bridge_run_given_as_run(tiny_bridge_dir):
    port = free_port()
    argv = ["serve", tiny_bridge_dir, "--port", port, "--log-level", "warning"]
    server = subprocess.Popen([sys.executable, "-m", "vlfuse.cli", *map(str, argv)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the server did not start within 180 s"
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/v1/info")
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert info.json()["capabilities"] == ["ask", "caption"] and info.json()["task"] == "bridge"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_cli_errors_for_a_wrong_bridge_are_clear(tmp_path):
    proc = vlfuse("serve", "--bridge", tmp_path / "nope")
    assert proc.returncode == 2 and "neither a run directory" in " ".join(proc.stderr.split())
    proc = vlfuse("serve")
    assert proc.returncode == 2 and "nothing to serve" in " ".join(proc.stderr.split())


def test_run_arguments_are_recognised_and_a_missing_shipped_bridge_is_named(
    tiny_bridge_dir, tiny_run_dir, tmp_path, monkeypatch
):
    from vlfuse.errors import CheckpointError
    from vlfuse.serve.server import served_as
    from vlfuse.task import TASKS

    assert served_as("easy-vqa-bridge")[0] == "bridge" and served_as(tiny_bridge_dir)[0] == "bridge"
    nowhere = tmp_path / "nowhere"
    assert served_as(tiny_run_dir)[0] == "predict" and served_as(nowhere) == ("predict", nowhere)
    installed = tmp_path / "not-installed"
    installed.mkdir()
    (installed / "config.yaml").write_text((tiny_bridge_dir / "config.yaml").read_text())
    monkeypatch.setitem(TASKS["bridge"].shipped, "easy-vqa-bridge", str(installed))
    with pytest.raises(CheckpointError, match="shipped run 'easy-vqa-bridge' is incomplete.*bridge.safetensors"):
        create_app(options={"bridge": "easy-vqa-bridge"})


def test_an_ood_detector_puts_a_score_on_every_answer_and_strict_refuses_a_far_image(client, tiny_bridge, tmp_path):
    from PIL import Image

    from vlfuse.ood_fit import fit_run_ood

    fit_run_ood(tiny_bridge, out=tmp_path)  # on the tiny run's own training images (the server shares the run)
    try:
        candidates = [easy_vqa_image(3)]
        g = torch.Generator().manual_seed(0)
        cells = (torch.arange(64) // 8)[:, None] + (torch.arange(64) // 8)[None, :]  # (64, 64) 8-px squares
        board = torch.stack([cells % 2 * 255, (1 - cells % 2) * 255, cells * 0], dim=-1).to(torch.uint8)  # red/green
        for name, pixels in (("noise", torch.randint(0, 256, (64, 64, 3), generator=g, dtype=torch.uint8)),
                             ("board", board)):
            Image.fromarray(pixels.contiguous().numpy()).save(tmp_path / f"{name}.png")
            candidates.append(tmp_path / f"{name}.png")
        verdicts = tiny_bridge.ood_verdicts(tiny_bridge.load_images(candidates))  # the Python API's word
        assert not verdicts[0].far and any(v.far for v in verdicts[1:])
        for path, verdict in zip(candidates, verdicts, strict=True):
            body = client.post("/v1/caption", files=upload(path)).json()
            assert body["ood"] == pytest.approx(verdict.to_dict(), rel=1e-4) and body["caption"]  # same decode
            assert (body["warning"] is not None) == verdict.far
            if verdict.far:
                assert "out-of-distribution score" in body["warning"]
                refused = client.post("/v1/ask", files=upload(path), data={"question": "what?", "strict": "true"})
                assert refused.status_code == 422 and refused.json()["error"]["code"] == "out_of_distribution"
    finally:
        tiny_bridge.ood = None
