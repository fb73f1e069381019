"""The try-it page at GET /, in a real headless Chromium against the real server over HTTP."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import REPO_ROOT
from tests.serving.conftest import RunningServer

ARTIFACTS = REPO_ROOT / "build" / "test-artifacts"


def _real_image() -> Path:
    """A real HAM10000 JPEG: SKINLESION_REAL_DATA, else ../shared/data/ham10000 of the repo."""
    root = Path(os.environ.get("SKINLESION_REAL_DATA") or REPO_ROOT.parent / "shared/data/ham10000")
    images = sorted((root / "images").glob("*.jpg"))[:1] if (root / "images").is_dir() else []
    if not images:
        pytest.skip(f"No real images in {root}/images (set SKINLESION_REAL_DATA)")
    return images[0]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through chromedriver (Debian's chromium and chromium-driver)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip(
            "chromium and chromedriver are not installed (apt-get install chromium "
            "chromium-driver; .ci/run does)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1100,1000"):  # fmt: skip
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def _wait(browser: Any, condition: str, timeout: float = 60) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout).until(lambda b: b.execute_script(f"return {condition};"))


def test_page_and_model_info_are_served(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert b'fetch("invocations"' in page.content and b"generated-banner" in page.content
    info = client.get("/model").json()
    # The session's model is fitted on the generated sample, and model.json says so.
    assert info["generated_data"] is True and info["explain"] is True
    assert info["model_version"] == "serving-test/1" and len(info["classes"]) == 8


def test_a_real_image_classified_in_the_browser(
    browser: Any, server: RunningServer, client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.common.by import By

    image = _real_image()
    browser.get(f"{server.url}/")
    _wait(browser, "document.body.dataset.ready === 'true'")
    assert browser.find_element(By.ID, "generated-banner").is_displayed()
    assert "serving-test/1" in browser.find_element(By.ID, "model").text

    browser.find_element(By.ID, "file").send_keys(str(image))
    _wait(browser, "['done', 'error'].includes(document.body.dataset.state)")
    assert browser.execute_script("return document.body.dataset.state") == "done", (
        browser.find_element(By.ID, "error").text
    )

    # What the page shows is what the endpoint answers for the same bytes.
    answer = client.post(
        "/invocations",
        content=image.read_bytes(),
        headers={"Content-Type": "image/jpeg"},
    ).json()["predictions"][0]
    rows = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    shown = {row.get_attribute("data-class"): row for row in rows}
    assert list(shown) == list(answer["probabilities"])
    for name, probability in answer["probabilities"].items():
        row = shown[name]
        assert float(row.get_attribute("data-probability")) == pytest.approx(probability, abs=1e-6)
        assert row.find_element(By.CLASS_NAME, "value").text == f"{100 * probability:.1f}%"
        width = row.find_element(By.CLASS_NAME, "fill").value_of_css_property("width")
        track = row.find_element(By.CLASS_NAME, "track").value_of_css_property("width")
        assert float(width[:-2]) / float(track[:-2]) == pytest.approx(probability, abs=0.01)
    top = browser.find_element(By.CSS_SELECTOR, "#bars .bar.top")
    assert top.get_attribute("data-class") == answer["top_class"]
    assert browser.find_element(By.ID, "status").text == f"{image.name}: {answer['top_class']}"

    # The Grad-CAM overlay was drawn: the canvas holds the photograph plus red-tinted evidence.
    overlay = browser.find_element(By.ID, "overlay")
    assert overlay.get_attribute("data-heatmap") == "true"
    assert answer["top_class"] in browser.find_element(By.ID, "overlay-caption").text
    png = base64.b64decode(
        browser.execute_script(
            "return document.getElementById('overlay').toDataURL('image/png').split(',')[1];"
        )
    )
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    assert pixels.shape == (256, 256, 3) and pixels.std() > 10  # a picture, not a blank
    # The server sends no referral or assessability yet: their boxes stay hidden.
    if "refer" not in answer:
        assert not browser.find_element(By.ID, "refer").is_displayed()
    if "assessable" not in answer:
        assert not browser.find_element(By.ID, "assessable").is_displayed()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "serving-page.png"
    assert browser.save_screenshot(str(screenshot))
    with capsys.disabled():
        print(f"\nScreenshot of the try-it page: {screenshot}")


def test_referral_and_assessability_are_shown_when_the_answer_has_them(
    browser: Any, server: RunningServer, client: httpx.Client
) -> None:
    """The page's own render() with a real answer to which the two fields are added, in the
    shapes a referral policy may give them (this server does not send them yet)."""
    from selenium.webdriver.common.by import By

    image = _real_image()
    answer = client.post(
        "/invocations", content=image.read_bytes(), headers={"Content-Type": "image/jpeg"}
    ).json()
    answer["predictions"][0]["refer"] = True
    answer["predictions"][0]["assessable"] = {"assessable": False, "reason": "too dark"}
    browser.get(f"{server.url}/")
    _wait(browser, "document.body.dataset.ready === 'true'")
    browser.execute_async_script(
        "const [answer, image, done] = arguments; "
        "window.skinlesionRender(answer, 'data:image/jpeg;base64,' + image).then(() => done());",
        answer,
        base64.b64encode(image.read_bytes()).decode(),
    )
    refer = browser.find_element(By.ID, "refer")
    assessable = browser.find_element(By.ID, "assessable")
    assert refer.is_displayed() and refer.get_attribute("data-value") == "true"
    assert "refer to a dermatologist" in refer.text
    assert assessable.is_displayed() and assessable.get_attribute("data-value") == "false"
    assert assessable.text.startswith("Not assessable") and "too dark" in assessable.text
