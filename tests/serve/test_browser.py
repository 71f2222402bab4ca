"""The web page end to end: headless Chromium (Debian's) driven by Playwright against a real server — upload or drop
a real image, type a question, read the answer off the page."""

from pathlib import Path

import pytest
from live_server import easy_vqa_image, live_server

from vlfuse.api import load_run
from vlfuse.serve import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does)"
)


@pytest.fixture(scope="module")
def site(tiny_run_dir):
    run = load_run(tiny_run_dir)
    with live_server(create_app(run)) as url:
        yield url, run


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, site):
    page = browser.new_page()
    page.goto(site[0])
    page.wait_for_function("document.getElementById('model-info').textContent.includes('labels')")
    yield page
    page.close()


def shown_answers(page) -> list[tuple[str, float]]:
    page.wait_for_selector("#results li")
    rows = page.locator("#results li").evaluate_all("items => items.map(i => [i.dataset.label, i.dataset.probability])")
    return [(label, float(p)) for label, p in rows]


def test_page_answers_an_uploaded_image_and_question(page, site, tmp_path):
    _, run = site
    image, question = easy_vqa_image(2), "what color is the shape?"
    assert "multiclass" in page.text_content("#model-info")
    page.set_input_files("#image-input", str(image))
    assert page.is_visible("#preview")
    page.fill("#text-input", question)
    page.click("#submit")
    answers = shown_answers(page)
    expected = run.predict(image=image, text=question, top_k=5)
    assert [label for label, _ in answers] == [p.label for p in expected]
    assert [p for _, p in answers] == pytest.approx([p.probability for p in expected], abs=1e-5)
    assert page.text_content("#top-label") == expected[0].label
    width = page.locator("#results li .bar span").first.evaluate("e => parseFloat(e.style.width)")
    assert width == pytest.approx(100 * expected[0].probability, abs=0.1)
    assert "image + text" in page.text_content("#answer-meta")
    page.screenshot(path=str(tmp_path / "answer.png"))


def test_page_answers_a_dropped_image(page, site):
    _, run = site
    image = easy_vqa_image(4)
    page.evaluate(
        """bytes => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "dropped.png", {type: "image/png"}));
            const zone = document.getElementById("dropzone");
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        list(image.read_bytes()),
    )
    assert page.text_content("#dropzone-hint") == "dropped.png"
    page.click("#submit")
    answers = shown_answers(page)
    expected = run.predict(image=image, top_k=5)
    assert answers[0][0] == expected[0].label
    assert "from image (" in page.text_content("#answer-meta")


def test_page_shows_a_clear_error(page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page.set_input_files("#image-input", str(notes))
    page.click("#submit")
    page.wait_for_selector("#error", state="visible")
    assert "'notes.txt' is not an image" in page.text_content("#error")
    assert page.is_hidden("#answer")


# ---------------------------------------------------------------- the bridge and search panels
@pytest.fixture(scope="module")
def full_site(tiny_run_dir, tiny_bridge, tiny_search):
    """One server with every capability: the classifier, the language bridge and the image index."""
    options = {"bridge": tiny_bridge, "index": tiny_search.image_index}
    with live_server(create_app(load_run(tiny_run_dir), options=options)) as url:
        yield url


def open_page(browser, url):
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("document.body.dataset.capabilities !== undefined")
    return page


def test_every_panel_of_a_full_server(browser, full_site, tiny_bridge, tmp_path):
    page = open_page(browser, full_site)
    try:
        for panel in ("#image-panel", "#predict-form", "#ask-form", "#search-form"):
            assert page.is_visible(panel), panel
        assert "language bridge" in page.text_content("#model-info") and "images.index" in page.text_content(
            "#model-info"
        )
        image, question = easy_vqa_image(5), "what shape is in the image?"
        pixels = tiny_bridge.load_images([image])  # (1, C, H, W) uint8
        page.set_input_files("#image-input", str(image))
        page.fill("#question-input", question)
        page.click("#ask-submit")
        page.wait_for_selector("#ask-output[data-kind='ask']", state="visible")
        assert page.text_content("#ask-text") == tiny_bridge.ask(pixels, [question])[0]
        assert page.text_content("#ask-kind") == "Answer:" and "generated in" in page.text_content("#ask-meta")
        page.click("#caption-submit")
        page.wait_for_selector("#ask-output[data-kind='caption']", state="visible")
        assert page.text_content("#ask-text") == tiny_bridge.caption(pixels)[0]
        page.click("#submit")  # the classifier still answers for the same image
        assert shown_answers(page)
        page.screenshot(path=str(tmp_path / "full.png"), full_page=True)
    finally:
        page.close()


def test_search_panel_shows_thumbnails_with_scores(browser, full_site, tiny_search):
    from vlfuse.retrieval.search import search
    from vlfuse.task import load_run

    page = open_page(browser, full_site)
    try:
        page.fill("#query-input", "a green circle")
        page.fill("#search-k", "4")
        page.click("#search-submit")
        page.wait_for_selector("#search-results li")
        rows = page.locator("#search-results li").evaluate_all(
            "items => items.map(i => [i.dataset.source, parseFloat(i.dataset.score)])"
        )
        expected = search(load_run(tiny_search.run_dir), tiny_search.image_index, "a green circle", k=4).hits
        assert [source for source, _ in rows] == [h.source for h in expected]
        assert [score for _, score in rows] == pytest.approx([h.score for h in expected], abs=1e-5)
        page.wait_for_function(
            "[...document.querySelectorAll('#search-results img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        assert page.locator("#search-results img").count() == 4
        assert "4 images for “a green circle”" in page.text_content("#search-meta")
        page.fill("#query-input", "   ")
        page.click("#search-submit")
        page.wait_for_selector("#error", state="visible")
        assert "field 'query' is empty" in page.text_content("#error")
    finally:
        page.close()


def test_a_bridge_only_page_hides_predict_and_search(browser, tiny_bridge):
    with live_server(create_app(options={"bridge": tiny_bridge})) as url:
        page = open_page(browser, url)
        try:
            assert page.is_visible("#ask-form") and page.is_visible("#image-panel")
            assert page.is_hidden("#predict-form") and page.is_hidden("#search-form")
            page.fill("#question-input", "what color?")
            page.click("#ask-submit")  # no image chosen: the server's message is shown
            page.wait_for_selector("#error", state="visible")
            assert "field 'image'" in page.text_content("#error") and page.is_hidden("#ask-output")
        finally:
            page.close()


@pytest.mark.parametrize("path, rendered", [("/docs", ".opblock-summary-path"), ("/redoc", "[data-section-id]")])
def test_the_api_documentation_renders_offline(browser, site, path, rendered):
    """/docs and /redoc load every script, style and font from this server: with every other host blocked, Swagger UI
    and ReDoc still render the API's operations. (ReDoc's sidebar asks a CDN for its vendor's logo image and hides it
    when that fails; images are the one thing allowed to fail.)"""
    page = browser.new_page()
    elsewhere: list[str] = []

    def only_this_server(route):
        if route.request.url.startswith(site[0]):
            route.continue_()
            return
        if route.request.resource_type != "image":
            elsewhere.append(f"{route.request.resource_type} {route.request.url}")
        route.abort()

    page.route("**/*", only_this_server)
    page.goto(site[0] + path)
    page.wait_for_selector(rendered, timeout=30_000)
    assert "/v1/predict" in page.content()
    assert elsewhere == []
    page.close()


def test_the_page_links_to_documentation_that_exists(page, site):
    for link in page.locator("footer a").evaluate_all("links => links.map(a => a.getAttribute('href'))"):
        assert page.request.get(site[0] + link).status == 200, link


def test_page_explains_a_prediction_with_a_heatmap_and_coloured_words(page, site, tmp_path):
    _, run = site
    image, question = easy_vqa_image(3), "what shape is in the image?"
    page.set_input_files("#image-input", str(image))
    page.fill("#text-input", question)
    page.select_option("#explain-method", "ig")
    page.click("#explain-submit")
    page.wait_for_selector("#explanation:not([hidden])")
    overlay = page.get_attribute("#explain-overlay", "src")
    assert overlay.startswith("data:image/png;base64,")
    natural = page.locator("#explain-overlay").evaluate("img => img.complete && img.naturalWidth")
    assert natural == 4 * run.cfg.data.image_size  # the overlay decoded at its drawn size
    words = page.locator("#explain-words .tok").evaluate_all("s => s.map(e => [e.textContent, e.dataset.score])")
    assert [w for w, _ in words] == run.tokenizer.tokenize(question)
    assert any(float(score) != 0 for _, score in words)
    expected = run.predict(image=image, text=question, top_k=1)[0]
    assert page.text_content("#explain-label").startswith(expected.label)
    assert "exact Shapley" in page.text_content("#explain-shares")
    assert "ig: removing its top 10 %" in page.text_content("#explain-check")
    page.screenshot(path=str(tmp_path / "explanation.png"))
