"""Real headless Chromium for tests: Debian's ``chromium`` driven through Debian's ``chromium-driver`` by selenium.

Import the fixture into a test module::

    from tests.browser import browser  # noqa: F401  (pytest fixture)

- ``browser`` (module scope): a :class:`Browser`, i.e. a selenium Chrome WebDriver on ``/usr/bin/chromium`` through
  ``/usr/bin/chromedriver`` (``make test-deps`` installs both; Selenium Manager is never asked to download
  anything), headless (``--headless=new``), ``--no-sandbox`` (the tests may run as root), a temporary profile and
  download folder; quit afterwards.
- :meth:`Browser.screenshot` saves the whole page as ``screenshots/NAME.png`` in the project folder (git-ignored).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from python_gateway.config import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = PROJECT_ROOT / "screenshots"
WINDOW = (1280, 900)


class Browser:
    """A headless Chromium session with a download folder and full-page screenshots."""

    def __init__(self, root: Path):
        # selenium is imported here so that test modules without a browser never need it
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.root = root
        self.downloads = root / "downloads"
        self.downloads.mkdir()
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    f"--user-data-dir={root / 'profile'}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                    "--lang=en-GB", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                    "--disable-background-networking", "--disable-sync", "--disable-component-update",
                    "--metrics-recording-only", "--password-store=basic"):
            options.add_argument(arg)
        options.add_experimental_option("prefs", {
            "download.default_directory": str(self.downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
            "intl.accept_languages": "en-GB,en",
        })
        # With both paths given selenium never runs Selenium Manager; SE_OFFLINE forbids it any download anyway.
        os.environ["SE_OFFLINE"] = "true"
        service = Service(executable_path=str(CHROMEDRIVER), log_output=str(root / "chromedriver.log"))
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(30)
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                                    {"behavior": "allow", "downloadPath": str(self.downloads),
                                     "eventsEnabled": True})

    def quit(self) -> None:
        self.driver.quit()

    def screenshot(self, name: str) -> Path:
        """The whole page (not just the window) as screenshots/NAME.png; returns the file."""
        SCREENSHOTS.mkdir(exist_ok=True)
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        width = max(int(size["width"]), 320)
        height = min(max(int(size["height"]), 200), 8000)
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
        path = SCREENSHOTS / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def wait_for_download(self, suffix: str, before: set[str], timeout: float = 30) -> Path:
        """The file ending in ``suffix`` that appeared in the download folder since ``before`` (names), once
        Chromium has finished writing it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            names = {p.name for p in self.downloads.iterdir()}
            done = [n for n in names - before if n.endswith(suffix)]
            partial = [n for n in names if n.endswith(".crdownload")]
            if done and not partial:
                return self.downloads / sorted(done)[0]
            time.sleep(0.1)
        raise AssertionError(f"no *{suffix} downloaded within {timeout:.0f} s; "
                             f"the folder holds {sorted(p.name for p in self.downloads.iterdir())}")

    def downloaded(self) -> set[str]:
        return {p.name for p in self.downloads.iterdir()}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium for the module (Debian's chromium and chromium-driver; ``make test-deps`` installs them)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `make test-deps` (apt packages chromium, chromium-driver)",
                    pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="festpay-chromium-"))
    try:
        b = Browser(root)
        try:
            yield b
        finally:
            b.quit()
    finally:
        shutil.rmtree(root, ignore_errors=True)
