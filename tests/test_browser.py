"""The web page in a real headless Chromium (Debian's package, driven by Playwright).

Locally, without a browser, these tests skip and say why; under CI (``CI=true``) a missing
browser is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from stylenet.checkpoints.format import export_inference_checkpoint, make_thumbnail
from stylenet.io.paths import SAMPLE_CONTENT_DIR, STYLE_DIR
from stylenet.nn.network import random_network

CHROMIUM = (
    os.environ.get("STYLENET_CHROMIUM")
    or shutil.which("chromium")
    or shutil.which("chromium-browser")
)
# Flags for a headless run on a machine without a display or network (and as root in CI); the
# fake media flags give getUserMedia a synthetic camera that needs no permission prompt.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]  # fmt: skip


def _need_browser():
    missing = None
    if CHROMIUM is None:
        missing = "no chromium on this machine (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"browser test cannot run under CI: {missing}")
        pytest.skip(missing)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _need_browser()
    from stylenet.bench.serve import live_server

    net = random_network(2)
    ck = tmp_path_factory.mktemp("ck") / "bank.pt"
    thumbs = [make_thumbnail(STYLE_DIR / f"{n}.jpg") for n in ("starry_night", "the_scream")]
    export_inference_checkpoint(net, ["starry_night", "the_scream"], ck, thumbnails=thumbs)
    with live_server(ck, "--device", "cpu", "--precision", "fp32", "--default-size", "256") as url:
        yield url


@pytest.fixture
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(server)
        yield pg
        browser.close()
        assert not errors, errors


def test_upload_mix_and_download(page, tmp_path):
    page.wait_for_selector("[data-testid=style-the_scream] img")  # thumbnails shown
    page.set_input_files(
        "[data-testid=file]", str(SAMPLE_CONTENT_DIR / "gcompris_worldanimals_lemur.jpg")
    )
    page.wait_for_function("document.querySelector('[data-testid=result]').src.startsWith('blob:')")
    first = page.get_attribute("[data-testid=result]", "src")
    page.click("[data-testid=style-the_scream]")
    slider = page.locator("[data-testid=mix-the_scream]")
    slider.fill("0.3")  # move the blend slider: a new request with the mix
    page.wait_for_function(
        "(old) => document.querySelector('[data-testid=result]').src !== old", arg=first
    )
    page.wait_for_function(
        "document.querySelector('[data-testid=timing]').textContent.includes('ms on the server')"
    )
    assert "256x" in page.inner_text("[data-testid=timing]")
    assert page.get_attribute("[data-testid=download]", "href").startswith("blob:")
    assert not page.is_visible("[data-testid=error]")
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000


def test_the_palette_slider_restyles_and_excludes_preserved_colours(page):
    page.wait_for_selector("[data-testid=style-the_scream] img")
    page.set_input_files(
        "[data-testid=file]", str(SAMPLE_CONTENT_DIR / "gcompris_worldanimals_lemur.jpg")
    )
    page.wait_for_function("document.querySelector('[data-testid=result]').src.startsWith('blob:')")
    shown = page.get_attribute("[data-testid=result]", "src")
    page.check("[data-testid=preserve]")  # a new request with the photo's colours
    page.wait_for_function(
        "(old) => document.querySelector('[data-testid=result]').src !== old", arg=shown
    )
    first = page.get_attribute("[data-testid=result]", "src")
    page.locator("[data-testid=palette]").fill("1")  # the painting's colours: a new request
    page.wait_for_function(
        "(old) => document.querySelector('[data-testid=result]').src !== old", arg=first
    )
    # Choosing the palette cleared "preserve the photo's colours" (the server refuses both).
    assert not page.is_checked("[data-testid=preserve]")
    assert not page.is_visible("[data-testid=error]")
    page.check("[data-testid=preserve]")
    assert page.input_value("[data-testid=palette]") == "0"


def test_camera_mode_streams_stylized_frames(page):
    page.wait_for_selector("[data-testid=style-starry_night]")
    page.click("[data-testid=camera-button]")
    page.wait_for_function(
        "Number(document.querySelector('[data-testid=frames]').textContent) >= 3", timeout=60_000
    )
    assert page.get_attribute("[data-testid=camera-result]", "src").startswith("blob:")
    fps = float(page.inner_text("[data-testid=fps]").split()[0])
    assert fps > 0


def test_errors_are_shown_on_the_page(page, tmp_path):
    bad = Path(tmp_path / "notes.jpg")
    bad.write_text("not an image")
    page.wait_for_selector("[data-testid=style-starry_night]")
    page.set_input_files("[data-testid=file]", str(bad))
    page.wait_for_selector("[data-testid=error]:visible")
    assert "not an image" in page.inner_text("[data-testid=error]")
