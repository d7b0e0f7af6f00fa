"""The bin-check page in a real browser: headless Chromium (the system's, driven by Playwright) uploads a real bin,
types the recorded quantity, and reads the count, the verdict and the chart from the page; bad uploads show their
message while the page keeps answering. Screenshots land in runs/test-artifacts/ (ignored by git).

Needs the Debian packages ``chromium`` (and ``chromium-driver`` for Selenium users) and requirements-app.txt; skips,
saying which is missing, otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from inference import app, handler
from tests.conftest import ROOT
from tests.test_handler import FIXED, bomb, fixed, image_bytes

REAL_BINS = ROOT.parent / "shared" / "abid-real" / "folders"
ARTIFACTS = ROOT / "runs" / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no system Chromium (Debian: apt-get install chromium chromium-driver)")
    pytest.importorskip("playwright", reason="playwright is not installed (requirements-app.txt)")
    return path


@pytest.fixture(scope="module")
def page_url(tiny_model_dir, tmp_path_factory, chromium):
    """The page served in this process by a model whose answer is fixed (count 3 with P = 0.6)."""
    pytest.importorskip("gradio", reason="gradio is not installed (requirements-app.txt)")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    examples = tmp_path_factory.mktemp("examples")
    (examples / "synthetic-bin.jpg").write_bytes(image_bytes(seed=5))
    model = fixed(handler.model_fn(str(tiny_model_dir)), FIXED)
    photos = app.example_photos(str(examples))
    args = app.AppArguments(model=str(tiny_model_dir), port=free_port())
    page = app.build(model, photos)
    app.launch(page, args, photos, handler.Settings.from_env(), block=False)
    yield f"http://127.0.0.1:{args.port}/"
    page.close()


@pytest.fixture
def browser(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True, args=FLAGS)
        context.set_default_timeout(60_000)
        yield context.new_page()
        context.close()


def check(page, files: list[Path], quantity: str) -> None:
    """Upload the files, type the quantity and press Check; wait for as many answers as files."""
    page.locator("#photos input[type=file]").set_input_files([str(f) for f in files])
    for file in files:
        wait_for_photo(page, file.name)
    page.locator("#quantity textarea, #quantity input").first.fill(quantity)
    page.locator("#check").click()
    page.wait_for_function("n => document.querySelectorAll('#results .bin-result, #results .bin-error').length == n",
                           arg=len(files))


def wait_for_photo(page, name: str) -> None:
    """Until the upload box lists the photo (shown as stem and extension; its accessible name is the whole name)."""
    page.locator("#photos").get_by_label(name, exact=True).wait_for()


def chart(page) -> dict[str, float]:
    rows = page.locator("#results .bin-result .bar-row")
    return {rows.nth(i).get_attribute("data-label"): float(rows.nth(i).get_attribute("data-probability"))
            for i in range(rows.count())}


def test_a_real_bin_gets_its_count_verdict_and_chart(page_url, browser):
    if not REAL_BINS.is_dir():
        pytest.skip(f"real bins not found at {REAL_BINS}")
    real = sorted((REAL_BINS / "3").glob("*.jpg"))[0]
    browser.goto(page_url)
    check(browser, [real], "3")
    card = browser.locator("#results .bin-result")
    assert card.get_attribute("data-file") == real.name and card.get_attribute("data-count") == "3"
    assert browser.locator("#results .verdict").get_attribute("data-verdict") == "match"
    assert "Recorded 3: match" in card.inner_text()
    assert chart(browser) == pytest.approx(dict(zip(map(str, range(6)), FIXED)), abs=1e-5)
    widths = [browser.locator(f'#results .bar-row[data-label="{i}"] .bar').bounding_box()["width"] for i in range(6)]
    assert max(widths) == widths[3] and widths[3] > 5 * widths[0]  # the chart is drawn, tallest bar at the count
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.screenshot(path=str(ARTIFACTS / "app-real-bin.png"), full_page=True)


def test_bad_uploads_show_a_message_and_the_page_keeps_answering(page_url, browser, tmp_path):
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "bomb.png").write_bytes(bomb())
    (tmp_path / "bin.jpg").write_bytes(image_bytes(seed=2))
    browser.goto(page_url)
    check(browser, [tmp_path / "notes.txt", tmp_path / "bomb.png", tmp_path / "bin.jpg"], "0")
    errors = browser.locator("#results .bin-error")
    assert errors.nth(0).inner_text() == "notes.txt is not an image (JPEG, PNG, WEBP, BMP, GIF, TIFF)"
    assert errors.nth(1).inner_text().startswith("bomb.png is 8000x6000 pixels, over the limit")
    assert browser.locator("#results .verdict").get_attribute("data-verdict") == "mismatch"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.screenshot(path=str(ARTIFACTS / "app-bad-upload.png"), full_page=True)


def test_an_example_bin_can_be_picked(page_url, browser):
    browser.goto(page_url)
    browser.get_by_text("synthetic-bin.jpg").first.click()
    wait_for_photo(browser, "synthetic-bin.jpg")
    browser.locator("#check").click()
    browser.locator("#results .bin-result").wait_for()
    assert browser.locator("#results .bin-result").get_attribute("data-file") == "synthetic-bin.jpg"
    assert browser.locator("#results .verdict").count() == 0  # no recorded quantity: no verdict
