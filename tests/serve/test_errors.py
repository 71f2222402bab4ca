"""Every bad request gets a 4xx JSON error naming the field and the expectation, and the server keeps serving."""

import httpx
import pytest
from live_server import easy_vqa_image, image_bytes, live_server, png_bomb, truncated_png

from vlfuse.api import load_run
from vlfuse.serve import ServeLimits, create_app

LIMITS = ServeLimits(max_upload_bytes=100_000, max_pixels=500_000, formats=("PNG", "JPEG"), max_text_chars=200)
MULTIPART = {"content-type": "multipart/form-data; boundary=xyz"}


@pytest.fixture(scope="module")
def client(tiny_run_dir):
    with live_server(create_app(load_run(tiny_run_dir), limits=LIMITS)) as url, httpx.Client(base_url=url) as client:
        yield client


def image_part(data: bytes, name: str = "shape.png", mime: str = "image/png") -> dict:
    return {"files": {"image": (name, data, mime)}}


def streamed_upload(total: int):
    """A chunked multipart body whose image part grows past the limit (no Content-Length is declared)."""
    yield b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="huge.png"\r\n'
    yield b"Content-Type: image/png\r\n\r\n"
    for _ in range(total // 65536):
        yield b"\0" * 65536
    yield b"\r\n--xyz--\r\n"


CASES = {
    # name: (request arguments, status, code, field, words the message contains)
    "not an image": (
        image_part(b"just some text, not pixels", "notes.txt", "text/plain"),
        415, "unsupported_image", "image", ["'notes.txt' is not an image", "expected PNG, JPEG"],
    ),
    "truncated PNG": (image_part(truncated_png()), 422, "invalid_image", "image", ["truncated or corrupt"]),
    "decompression bomb": (image_part(png_bomb()), 413, "too_many_pixels", "image", ["'shape.png'"]),
    "too many pixels": (
        image_part(image_bytes((800, 700))),
        413, "too_many_pixels", "image", ["800x700 = 560,000 pixels", "at most 500,000"],
    ),
    "format not accepted": (
        image_part(image_bytes((32, 32), "GIF"), "anim.gif", "image/gif"),
        415, "unsupported_image", "image", ["is a GIF image", "expected PNG, JPEG"],
    ),
    "empty image file": (image_part(b""), 422, "empty_image", "image", ["0 bytes"]),
    "image over the upload limit": (
        image_part(b"\x89PNG" + b"\0" * 120_000),
        413, "image_too_large", "image", ["120,004 bytes", "at most 100,000"],
    ),
    "body over the limit (declared)": (
        {"content": b"\0" * 300_000, "headers": MULTIPART},
        413, "body_too_large", None, ["300,000 bytes", "at most 167,936"],
    ),
    "body over the limit (streamed)": (
        {"content": streamed_upload(400_000), "headers": MULTIPART},
        413, "body_too_large", None, ["over 167,936 bytes"],
    ),
    "malformed multipart": (
        {"content": b"--xyz\r\nthis is not a part", "headers": MULTIPART},
        400, "malformed_body", None, ["could not be parsed", "multipart/form-data"],
    ),
    "multipart without boundary": (
        {"content": b"--xyz\r\n", "headers": {"content-type": "multipart/form-data"}},
        400, "malformed_body", None, ["Missing boundary"],
    ),
    "unclosed part": (
        {"content": b'--xyz\r\nContent-Disposition: form-data; name="text"\r\n\r\nwhat colour', "headers": MULTIPART},
        400, "malformed_body", None, ["closing delimiter"],
    ),
    "no field at all": ({"data": {"top_k": "3"}}, 422, "missing_input", None, ["'image' file", "'text' field"]),
    "empty body": ({}, 422, "missing_input", None, ["no input"]),
    "JSON instead of a form": ({"json": {"text": "what shape?"}}, 415, "unsupported_media_type", None,
                               ["application/json", "multipart/form-data"]),
    "text too long": ({"data": {"text": "x" * 201}}, 422, "text_too_long", "text", ["at most 200 characters"]),
    "text far too long (form)": ({"data": {"text": "x" * 20_000}}, 422, "text_too_long", None,
                                 ["too long", "at most 200 characters"]),
    "text far too long (multipart)": ({"data": {"text": "x" * 20_000}, "files": {"no": ("", b"")}}, 422,
                                      "text_too_long", None, ["too long", "at most 200 characters"]),
    "non-ASCII text too long (form)": ({"data": {"text": "é" * 201}}, 422, "text_too_long", "text",
                                       ["at most 200 characters"]),
    "empty text": ({"data": {"text": "   "}}, 422, "empty_text", "text", ["field 'text' is empty"]),
    "text of NUL bytes": ({"data": {"text": "\x00" * 5}}, 422, "empty_text", "text", ["field 'text' is empty"]),
    "text sent as a file": ({"files": {"text": ("q.txt", b"what?", "text/plain")}}, 422, "invalid_field", "text",
                            ["field 'text'", "valid string"]),
    "image sent as text": ({"data": {"image": "shape.png", "text": "what?"}}, 422, "invalid_field", "image",
                           ["field 'image'", "expected a file"]),
    "top_k out of range": ({"data": {"text": "what?", "top_k": "0"}}, 422, "invalid_field", "top_k",
                           ["field 'top_k'", "greater than or equal to 1"]),
    "top_k not a number": ({"data": {"text": "what?", "top_k": "many"}}, 422, "invalid_field", "top_k",
                           ["field 'top_k'", "valid integer"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request_is_a_clear_4xx_and_the_server_keeps_serving(client, case):
    request, status, code, field, words = CASES[case]
    response = client.post("/v1/predict", **request)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error.get("field") == field
    for word in words:
        assert word in error["message"], error["message"]
    image = easy_vqa_image(0)
    good = client.post("/v1/predict", files={"image": (image.name, image.read_bytes())}, data={"text": "what color?"})
    assert good.status_code == 200, good.text
    assert good.json()["predictions"]


def test_unknown_endpoint_and_method_are_json(client):
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.get("/v1/predict")
    assert wrong.status_code == 405 and "GET is not allowed on /v1/predict" in wrong.json()["error"]["message"]


def test_limits_are_validated():
    with pytest.raises(ValueError, match="decompression-bomb limit"):
        ServeLimits(max_pixels=10**12)
    with pytest.raises(ValueError, match="unknown image format"):
        ServeLimits(formats=("PNG", "NOPE"))


@pytest.mark.parametrize("multipart", [False, True], ids=["url-encoded", "multipart"])
def test_a_text_at_the_character_limit_is_accepted_in_any_script(client, multipart):
    extra = {"files": {"no": ("", b"")}} if multipart else {}
    for text in ("é" * 200, "日" * 200, "🙂" * 200, "what\x00 colour?"):  # 2, 3 and 4 bytes a character in UTF-8
        response = client.post("/v1/predict", data={"text": text}, **extra)
        assert response.status_code == 200, (text[:3], response.text)
