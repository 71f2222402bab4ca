"""The web page of a video run end to end: headless Chromium (Debian's) driven by Playwright against a real server —
pick a clip file, type a question, read the answer off the page and see the clip playing beside it."""

import pytest
from live_server import live_server
from test_browser import CHROMIUM, CHROMIUM_ARGS
from tiny_video import tiny_video_run_dir, write_test_clip

from vlfuse.api import load_run
from vlfuse.serve import create_app, load_predictor

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does)"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    run = load_run(tiny_video_run_dir(tmp_path_factory))
    with live_server(create_app(load_predictor(run.path))) as url:
        yield url, run


@pytest.fixture(scope="module")
def page(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.goto(site[0])
        page.wait_for_function("document.getElementById('model-info').textContent.includes('labels')")
        yield page
        browser.close()


def test_page_plays_the_uploaded_clip_beside_the_answer(page, site, tmp_path):
    _, run = site
    clip, question = write_test_clip(run, tmp_path / "clip.webm", row=1)
    info = page.text_content("#model-info")
    assert "video (multiclass)" in info and "clips of 5 frames at 16 px" in info
    assert "video/*" in page.get_attribute("#image-input", "accept")
    assert page.text_content("#dropzone-hint") == "Drop a video clip here, or click to pick one"
    page.set_input_files("#image-input", str(clip))
    assert page.text_content("#dropzone-hint") == "clip.webm" and page.is_hidden("#preview")
    page.fill("#text-input", question)
    page.click("#submit")
    page.wait_for_selector("#results li")
    rows = page.locator("#results li").evaluate_all("items => items.map(i => [i.dataset.label, i.dataset.probability])")
    expected = run.predict(video=clip, text=question, top_k=5)
    assert [label for label, _ in rows] == [p.label for p in expected]
    assert [float(p) for _, p in rows] == pytest.approx([p.probability for p in expected], abs=1e-5)
    assert page.text_content("#top-label") == expected[0].label
    assert "video + text" in page.text_content("#answer-meta")

    video = page.locator("#answer-clip")
    assert video.is_visible() and video.get_attribute("src").startswith("blob:")
    assert all(video.get_attribute(a) is not None for a in ("controls", "loop", "autoplay", "muted"))
    page.wait_for_function("document.getElementById('answer-clip').readyState >= 2")  # the clip itself was loaded
    assert video.evaluate("v => [v.videoWidth, v.videoHeight]") == [16, 16]
    page.screenshot(path=str(tmp_path / "video-answer.png"))

    gif, _ = write_test_clip(run, tmp_path / "clip.gif", row=1)  # video elements do not play GIFs: an img does
    page.set_input_files("#image-input", str(gif))
    page.click("#submit")
    page.wait_for_selector("#answer-gif", state="visible")
    assert page.get_attribute("#answer-gif", "src").startswith("blob:") and page.is_hidden("#answer-clip")

    page.click("#clear-image")  # a text alone: the answer has no clip beside it
    page.click("#submit")
    page.wait_for_function("document.getElementById('answer-meta').textContent.startsWith('from text')")
    assert page.is_hidden("#answer-clip-box") and video.get_attribute("src") is None
