"""POST /v1/moderate on a real server: the same verdict as the Python API, the policy in /v1/info, clear errors; the
web page's Moderate panel in a real browser."""

import io

import httpx
import pytest
from live_server import live_server
from PIL import Image

from vlfuse.api import load_run
from vlfuse.data.images import decode_image_bytes
from vlfuse.serve import create_app


@pytest.fixture(scope="module")
def moderated(trained_runs):
    run = load_run(trained_runs("moderate")[0])
    run.test_photos = run.split_data("test").images  # (M, 1, 28, 28): prepared once for the module
    with live_server(create_app(run)) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, run, url


def listing_png(run, index: int = 0) -> bytes:
    pixels = run.test_photos[index][0].numpy()  # (28, 28) garment photo
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_moderate_matches_the_python_api(moderated):
    client, run, _ = moderated
    png, text = listing_png(run, 3), "replica handbag, stupid buyers stay away"
    response = client.post("/v1/moderate", files={"image": ("x.png", png, "image/png")}, data={"text": text})
    assert response.status_code == 200, response.text
    body = response.json()
    pixels = decode_image_bytes(png, size=run.cfg.data.image_size, channels=run.cfg.data.channels)
    expected = run.moderate([pixels], [text], attribute=True)[0].as_dict()
    assert body["decision"] == expected["decision"] and body["reasons"] == expected["reasons"]
    assert set(body["labels"]) == {"mismatch", "prohibited", "abusive"}
    for name, verdict in expected["labels"].items():
        assert body["labels"][name]["probability"] == pytest.approx(verdict["probability"], abs=1e-6)
        assert body["labels"][name]["decision"] == verdict["decision"]
        assert body["labels"][name]["driver"] == verdict["driver"] in ("image", "text", "both")
    assert body["used"] == {"image": True, "text": True}


def test_text_alone_is_scored_without_a_driver(moderated):
    client, run, _ = moderated
    body = client.post("/v1/moderate", data={"text": "authentic sneaker"}).json()
    expected = run.moderate(None, ["authentic sneaker"])[0]
    assert body["labels"]["abusive"]["probability"] == pytest.approx(expected.labels["abusive"].probability, abs=1e-6)
    assert all(v["driver"] is None for v in body["labels"].values()) and body["used"]["image"] is False


def test_info_names_the_task_and_its_policy(moderated):
    client, run, _ = moderated
    info = client.get("/v1/info").json()
    assert info["task"] == "moderate" and "moderate" in info["capabilities"]
    policy = info["moderate"]
    assert policy["labels"] == run.scores and policy["calibration"] == "temperature"
    assert policy["rules"]["prohibited"]["action"] == "block"
    assert policy["rules"]["mismatch"]["threshold"] == pytest.approx(run.rules["mismatch"]["threshold"])


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [({"text": "   "}, 422, "empty_text"), ({}, 422, "missing_input"), ({"text": "x" * 5000}, 422, None)],
)
def test_bad_requests_are_clear(moderated, data, status, code):
    client, _, _ = moderated
    response = client.post("/v1/moderate", data=data, files={"dummy": ("", b"", "text/plain")} if not data else None)
    assert response.status_code == status, response.text
    if code:
        assert response.json()["error"]["code"] == code


def test_the_page_moderates_an_uploaded_listing(moderated, tmp_path):
    from test_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    client, run, url = moderated
    image = tmp_path / "listing.png"
    image.write_bytes(listing_png(run, 5))
    text = "genuine bag, no idiots"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("document.body.dataset.capabilities !== undefined")
        assert page.is_visible("#moderate-form") and page.is_visible("#image-panel")
        page.set_input_files("#image-input", str(image))
        page.fill("#post-input", text)
        page.click("#moderate-submit")
        page.wait_for_selector("#verdict-labels li")
        shown = page.locator("#verdict-labels li").evaluate_all(
            "items => items.map(i => [i.dataset.label, i.dataset.decision, i.dataset.probability])")
        browser.close()
    expected = client.post("/v1/moderate", files={"image": ("l.png", image.read_bytes(), "image/png")},
                           data={"text": text}).json()  # fmt: skip
    assert [(label, decision) for label, decision, _ in shown] == [
        (k, v["decision"]) for k, v in expected["labels"].items()]
    assert [float(p) for _, _, p in shown] == pytest.approx([v["probability"] for v in expected["labels"].values()])
