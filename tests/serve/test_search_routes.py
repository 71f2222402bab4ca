"""POST /v1/search and GET /v1/search/image/{position} from a real retrieval run and index files on a real uvicorn
server: hits match `vlfuse search`, images are served by index position only, bad requests get clear 4xx JSON, and
an index built by another model is refused at startup."""

import io
import shutil
import subprocess
import sys

import httpx
import pytest
import torch
from live_server import live_server
from PIL import Image
from safetensors.torch import load_file, save_file

from vlfuse.errors import CheckpointError
from vlfuse.retrieval.index import EmbeddingIndex
from vlfuse.retrieval.search import search as cli_search
from vlfuse.retrieval.sources import thumbnail
from vlfuse.serve import create_app
from vlfuse.task import load_run


@pytest.fixture(scope="module")
def retrieval_run(tiny_search):
    return load_run(tiny_search.run_dir)


@pytest.fixture(scope="module")
def images(tiny_search):
    """A search-only server over the image index; its run is the one the index records (no retrieval_run given)."""
    with live_server(create_app(options={"index": tiny_search.image_index})) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client


@pytest.fixture(scope="module")
def texts(tiny_search, retrieval_run):
    app = create_app(options={"index": tiny_search.text_index, "retrieval_run": retrieval_run})
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def test_the_top_hit_in_a_text_index_is_the_query_itself(texts, tiny_search):
    captions_file = tiny_search.run_dir.parent / "captions.txt"
    for line, caption in enumerate(tiny_search.captions, start=1):  # the same words embed to the same vector: 1.0
        response = texts.post("/v1/search", data={"query": caption, "k": "3"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["index_kind"] == "text" and len(body["hits"]) == 3
        top = body["hits"][0]
        assert top["label"] == caption and top["score"] == pytest.approx(1.0, abs=1e-4)
        assert top["source"] == f"{captions_file}:{line}"
        assert all(h["score"] < 1.0 - 1e-4 for h in body["hits"][1:]) and top["image_url"] is None


def test_image_hits_match_vlfuse_search(images, tiny_search, retrieval_run):
    for query in ("a blue triangle", "a red circle", "green"):
        response = images.post("/v1/search", data={"query": query, "k": "6"})
        assert response.status_code == 200, response.text
        body = response.json()
        expected = cli_search(retrieval_run, tiny_search.image_index, query, k=6).hits
        assert [h["source"] for h in body["hits"]] == [h.source for h in expected]
        assert [h["score"] for h in body["hits"]] == pytest.approx([h.score for h in expected], abs=1e-5)
        assert [h["rank"] for h in body["hits"]] == [1, 2, 3, 4, 5, 6]
        assert [h["image_url"] for h in body["hits"]] == [f"/v1/search/image/{h.position}" for h in expected]
    default_k = images.post("/v1/search", data={"query": "a shape"}).json()
    assert len(default_k["hits"]) == 5


def png(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content)).convert("RGB")


def test_indexed_images_are_served_by_position(images, tiny_search):
    index = EmbeddingIndex.load(tiny_search.image_index)
    red = png(images.get(f"/v1/search/image/{index.sources.index(str(tiny_search.images['red']))}"))
    assert red.size == (40, 40) and red.getpixel((20, 20)) == (255, 0, 0)  # the file itself, at its own size
    wide = png(images.get(f"/v1/search/image/{index.sources.index(str(tiny_search.images['wide']))}"))
    assert wide.size == (256, 128) and wide.getpixel((128, 64))[1] > 100  # shrunk to 256 px, green in the middle
    builtin = index.sources.index("easy-vqa:test/12")  # a built-in item: no file path at all
    shown = png(images.get(f"/v1/search/image/{builtin}"))
    assert shown.tobytes() == thumbnail("easy-vqa:test/12").tobytes() and shown.size == (64, 64)


@pytest.mark.parametrize(
    "path, status, words",
    [
        ("/v1/search/image/100000", 404, ["no item 100000 in the index", "positions 0 to 1,002"]),
        ("/v1/search/image/-1", 422, ["field 'position'", "greater than or equal to 0"]),
        ("/v1/search/image/red.png", 422, ["field 'position'", "valid integer"]),
        ("/v1/search/image/..%2F..%2Fetc%2Fpasswd", None, []),
    ],
)
def test_only_indexed_images_can_be_fetched(images, path, status, words):
    response = images.get(path)
    assert response.status_code == status if status else 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json" and "root:" not in response.text
    for word in words:
        assert word in response.json()["error"]["message"]


def test_a_text_index_serves_no_images(texts):
    response = texts.get("/v1/search/image/0")
    assert response.status_code == 404 and "holds texts, not images" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "request_args, status, code, field, words",
    [
        ({"data": {"query": "   "}}, 422, "empty_text", "query", ["field 'query' is empty"]),
        ({"data": {"k": "3"}}, 422, "invalid_field", "query", ["field 'query'", "is required"]),
        ({"data": {"query": "a red circle", "k": "0"}}, 422, "invalid_field", "k", ["greater than or equal to 1"]),
        ({"data": {"query": "a red circle", "k": "101"}}, 422, "invalid_field", "k", ["less than or equal to 100"]),
        ({"data": {"query": "x" * 1001}}, 422, "text_too_long", "query", ["at most 1,000 characters"]),
        ({"json": {"query": "a red circle"}}, 415, "unsupported_media_type", None, ["application/json", "'query'"]),
    ],
)
def test_bad_queries_get_clear_4xx_json(images, request_args, status, code, field, words):
    response = images.post("/v1/search", **request_args)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error.get("field") == field
    for word in words:
        assert word in error["message"], error["message"]


def test_info_of_a_search_only_server(images, tiny_search):
    info = images.get("/v1/info").json()
    assert info["capabilities"] == ["search"] and info["task"] == "retrieval"
    assert info["run"] == tiny_search.run_dir.name and info["metrics"]["test"]["images"] == 40
    assert info["search"] == {"index": "images.index", "kind": "image", "items": 1003, "backend": "exact",
                              "run": "run", "max_k": 100}  # fmt: skip
    assert info["batching"]["search"]["requests"] >= 1
    assert images.post("/v1/predict", data={"text": "a"}).status_code == 404


def test_an_index_of_another_model_is_refused_at_startup(tiny_search, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_search.run_dir, other)
    weights = load_file(other / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 0.01
    save_file(weights, other / "model.safetensors")
    with pytest.raises(CheckpointError, match="built by a different model"):
        create_app(options={"index": tiny_search.image_index, "retrieval_run": other})
    proc = subprocess.run([sys.executable, "-m", "vlfuse.cli", "serve", "--index", tiny_search.image_index,
                           "--retrieval-run", other], capture_output=True, text=True, timeout=300)  # fmt: skip
    message = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "built by a different model" in message, proc.stderr[-2000:]
    assert "vlfuse index" in message


def test_an_index_whose_run_is_gone_names_the_option(tmp_path):
    orphan = EmbeddingIndex(4, kind="image", fingerprint="f", run=str(tmp_path / "deleted-run"))
    orphan.add(torch.eye(4)[:1], ["a.png"])
    orphan.save(tmp_path / "orphan.index")
    with pytest.raises(CheckpointError, match="deleted-run.*--retrieval-run DIR"):
        create_app(options={"index": tmp_path / "orphan.index"})
