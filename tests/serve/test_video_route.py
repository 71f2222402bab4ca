"""POST /v1/predict of a video run on a real uvicorn server: a clip upload ('video' field) + text answers as
`VideoRun.predict` on the same file; bad, over-limit and wrong-field uploads get the API's 4xx JSON errors naming the
field; /v1/info says the run reads video and why it is served with PyTorch."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from live_server import image_bytes, live_server
from tiny_video import tiny_video_run_dir, write_test_clip

from vlfuse.api import load_run
from vlfuse.serve import ServeLimits, TorchPredictor, create_app, load_predictor


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    return load_run(tiny_video_run_dir(tmp_path_factory))


@pytest.fixture(scope="module")
def clips(video_run, tmp_path_factory) -> dict[str, tuple]:
    """Test rows 0-2 as mp4 files, and row 0 as webm and gif: suffix or name → (file, question)."""
    folder = tmp_path_factory.mktemp("clips")
    made = {f"mp4-{row}": write_test_clip(video_run, folder / f"row{row}.mp4", row) for row in range(3)}
    made |= {suffix: write_test_clip(video_run, folder / f"row0.{suffix}", 0) for suffix in ("webm", "gif")}
    return made


@pytest.fixture(scope="module")
def client(video_run):
    """The server `vlfuse serve RUN` starts for a video run (default backend: auto)."""
    with live_server(create_app(load_predictor(video_run.path))) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


def post_clip(client, path, text=None, field="video", **data) -> httpx.Response:
    files = {field: (path.name, path.read_bytes(), "application/octet-stream")}
    return client.post("/v1/predict", files=files, data={**({"text": text} if text else {}), **data})


def assert_error(response: httpx.Response, status: int, code: str, field: str, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["field"] == field, error
    assert f"field '{field}'" in error["message"] and all(w in error["message"] for w in words), error["message"]


@pytest.mark.parametrize("name", ["mp4-0", "mp4-1", "webm", "gif"])
def test_a_clip_and_a_text_answer_as_the_python_api(client, video_run, clips, name):
    path, question = clips[name]
    response = post_clip(client, path, question, top_k="4")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["used"] == {"video": True, "text": True} and body["backend"] == "torch"
    expected = video_run.predict(video=path, text=question, top_k=4)
    assert [p["label"] for p in body["predictions"]] == [p.label for p in expected]
    got = [p["probability"] for p in body["predictions"]]
    assert got == pytest.approx([p.probability for p in expected], abs=1e-5)


def test_concurrent_clips_are_micro_batched_and_answer_as_alone(client, video_run, clips):
    requests = [clips[f"mp4-{row % 3}"] for row in range(9)] + [(None, clips["mp4-0"][1])]  # and one text alone
    before = client.get("/v1/info").json()["batching"]["predict"]["requests"]

    def ask(item):
        path, question = item
        if path is None:
            return client.post("/v1/predict", data={"text": question, "top_k": "3"})
        return post_clip(client, path, question, top_k="3")

    with ThreadPoolExecutor(len(requests)) as pool:
        responses = list(pool.map(ask, requests))
    for (path, question), response in zip(requests, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["used"] == {"video": path is not None, "text": True}
        expected = video_run.predict(video=path, text=question, top_k=3)
        got = [(p["label"], p["probability"]) for p in response.json()["predictions"]]
        assert [label for label, _ in got] == [p.label for p in expected]
        assert [p for _, p in got] == pytest.approx([p.probability for p in expected], abs=1e-5)
    assert client.get("/v1/info").json()["batching"]["predict"]["requests"] == before + len(requests)


def test_a_mixed_batch_of_clips_matches_each_alone(video_run, clips):
    predictor = TorchPredictor(video_run)
    clip = video_run.load_pixels(clips["mp4-1"][0])  # (F, C, S, S) uint8
    together = predictor.predict_proba([clip, None, clip], ["what color is the shape?", "what shape?", None])  # (3, K)
    alone = [predictor.predict_proba([c], [t]) for c, t in ((clip, "what color is the shape?"), (None, "what shape?"),
                                                             (clip, None))]  # fmt: skip
    assert torch.allclose(together, torch.cat(alone), atol=1e-5)


def _header_crash(data: bytes) -> bytes:
    """An mp4 whose 'hdlr' box claims 4 GiB: the decoder meets a stream without a codec context (an AttributeError
    inside read_video, not a DataError) — still a 4xx."""
    at = data.find(b"hdlr")
    return data[: at - 4] + b"\xff\xff\xff\xff" + data[at:]


@pytest.mark.parametrize(
    "make, status, code, words",
    [
        (lambda data: b"", 422, "empty_video", ["is empty (0 bytes)"]),
        (lambda data: b"not a video at all " * 50, 415, "unsupported_video", ["cannot be decoded as a video"]),
        (lambda data: image_bytes(), 415, "unsupported_video", ["cannot be decoded as a video"]),
        (lambda data: data[:48], None, None, []),  # truncated inside its header: a 4xx of the decoder's kind
        (_header_crash, None, None, []),
    ],
    ids=["empty", "garbage", "png", "truncated", "header-crash"],
)
def test_a_bad_clip_is_a_4xx_naming_the_field(client, clips, make, status, code, words):
    path, question = clips["mp4-0"]
    files = {"video": ("clip.mp4", make(path.read_bytes()), "video/mp4")}
    response = client.post("/v1/predict", files=files, data={"text": question})
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["field"] == "video" and error["message"].startswith("field 'video': "), error
    if status is not None:
        assert_error(response, status, code, "video", *words)
    assert client.get("/healthz").status_code == 200


def test_an_image_field_to_a_video_run_is_422(client, clips):
    response = client.post("/v1/predict", files={"image": ("shape.png", image_bytes(), "image/png")},
                           data={"text": clips["mp4-0"][1]})  # fmt: skip
    assert_error(response, 422, "video_expected", "image", "reads clips", "'video' field")
    plain = client.post("/v1/predict", data={"text": "what?", "video": "not a file"})
    assert plain.status_code == 422 and plain.json()["error"]["field"] == "video"


def test_a_video_field_to_an_image_run_is_422(tiny_run_dir, clips):
    with live_server(create_app(load_run(tiny_run_dir))) as url, httpx.Client(base_url=url, timeout=30) as client:
        response = post_clip(client, clips["mp4-0"][0], "what color is the shape?")
        assert_error(response, 422, "image_expected", "video", "reads images", "'image' field")
        assert client.get("/v1/info").json()["inputs"].keys() == {"image", "text", "either_may_be_missing",
                                                                   "image_size"}  # fmt: skip


def test_over_the_servers_upload_limit_is_413(video_run, clips):
    path, question = clips["mp4-0"]
    size = path.stat().st_size
    app = create_app(video_run, limits=ServeLimits(max_upload_bytes=size - 1))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        response = post_clip(client, path, question)
        assert_error(response, 413, "video_too_large", "video", f"{size:,} bytes", f"at most {size - 1:,} bytes")
        assert client.get("/v1/info").json()["video"]["max_upload_bytes"] == size - 1


@pytest.mark.parametrize(
    "setting, value, code, words",
    [
        ("max_duration", 0.5, "video_too_long", ["lasts 1.0 s", "data.video.max_duration"]),
        ("max_frames", 3, "too_many_frames", ["5 frames", "data.video.max_frames"]),
        ("max_side", 8, "video_too_wide", ["16x16", "data.video.max_side"]),
    ],
)
def test_over_the_runs_video_limits_is_413(video_run, clips, setting, value, code, words):
    run = load_run(video_run.path)
    setattr(run.cfg.data.video, setting, value)  # as if trained with this limit
    path, question = clips["mp4-0"]
    with live_server(create_app(run)) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert_error(post_clip(client, path, question), 413, code, "video", *words)
        assert client.get("/v1/info").json()["video"][setting] == value


def test_info_says_the_run_reads_video_and_why_torch(client, video_run):
    info = client.get("/v1/info").json()
    assert info["task"] == "video" and info["capabilities"] == ["predict"]
    assert info["inputs"] == {"image": False, "video": True, "text": True, "either_may_be_missing": True,
                              "image_size": None}  # fmt: skip
    video = video_run.cfg.data.video
    assert info["video"] == {
        "formats": ["MP4", "WebM", "AVI", "MOV", "MKV", "GIF"], "frames": video.kept_frames, "frame_size": 16,
        "channels": 3, "fps": None, "fit": "stretch", "max_upload_bytes": 5 * 2**20,
        "max_duration": video.max_duration, "max_frames": video.max_frames, "max_side": video.max_side,
    }  # fmt: skip
    assert info["backend"] == "torch" and info["backend_why"] == "'video' runs have no ONNX export"
    fields = client.get("/openapi.json").json()["components"]["schemas"]["Body_predict_video_v1_predict_post"]
    assert set(fields["properties"]) == {"video", "text", "top_k"}
    assert "MP4" in fields["properties"]["video"]["description"]
