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
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from python_gateway.config import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = PROJECT_ROOT / "screenshots"
WINDOW = (1280, 900)
WAIT_S = 15
T = TypeVar("T")


class Browser:
    """A headless Chromium session with a download folder and full-page screenshots."""

    def __init__(self, root: Path):
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


class Pages:
    """Someone at the browser on one site (the admin site, the portal): opens its pages, fills and submits forms,
    saves screenshots as ``screenshots/<prefix>-<name>.png``.

    Waiting for the next page never holds on to an element of the old one (its node may already be gone, which
    chromedriver reports in more ways than a stale reference): the old page gets a random mark in its ``window``,
    and the next page is there when the window carries no mark and its document has finished loading.  Finding an
    element is tried again when the page swapped it meanwhile (StaleElementReferenceException)."""

    def __init__(self, browser: Browser, base_url: str, site_title: str, shot_prefix: str):
        self.browser, self.base = browser, base_url
        self.site_title, self.shot_prefix = site_title, shot_prefix
        self.driver: WebDriver = browser.driver
        self.shots: list[str] = []

    def wait(self, condition: Callable[[WebDriver], Any], what: str, timeout: float = WAIT_S) -> Any:
        return WebDriverWait(self.driver, timeout, poll_frequency=0.1,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                             ).until(condition, message=what)

    def retry(self, action: Callable[[], T], attempts: int = 5) -> T:
        """``action`` again when the element it used went stale (the page redrew it) in between."""
        for attempt in range(attempts):
            try:
                return action()
            except StaleElementReferenceException:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def mark_page(self) -> str:
        """Marks the current document (a random value in its window); :meth:`wait_for_next_page` waits for a
        document without it."""
        mark = secrets.token_hex(8)
        self.driver.execute_script("window.__festpayPageMark = arguments[0];", mark)
        return mark

    def wait_for_next_page(self, mark: str, what: str) -> None:
        def loaded(drv: WebDriver) -> bool:
            try:
                current, state = drv.execute_script(
                    "return [window.__festpayPageMark || null, document.readyState];")
            except WebDriverException:  # the old document is going away, the new one not there yet
                return False
            return current != mark and state == "complete"

        self.wait(loaded, what)

    def open(self, path: str, shot: str | None = None) -> None:
        """GET a page of the site; it must be a page of the site, not an error page."""
        self.driver.get(self.base + path)
        self.page_ok(path)
        if shot:
            self.shot(shot)

    def page_ok(self, what: str) -> None:
        errors = self.retry(lambda: [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, ".error-page")])
        assert not errors, f"{what}: error page: {errors[0]}"
        assert self.driver.title.endswith(self.site_title), (what, self.driver.title)

    def shot(self, name: str) -> None:
        self.browser.screenshot(f"{self.shot_prefix}-{name}")
        self.shots.append(name)

    def text(self, css: str) -> str:
        return self.retry(lambda: self.driver.find_element(By.CSS_SELECTOR, css).text)

    def form_of(self, field_id: str) -> WebElement:
        return self.driver.find_element(By.ID, field_id).find_element(By.XPATH, "./ancestor::form")

    def fill(self, values: dict[str, str | bool]) -> None:
        """Types into fields by id (checkboxes: ticked or not; selects: by visible text)."""
        for field_id, value in values.items():
            def one(field_id: str = field_id, value: str | bool = value) -> None:
                el = self.driver.find_element(By.ID, field_id)
                if el.tag_name == "select":
                    Select(el).select_by_visible_text(str(value))
                elif el.get_attribute("type") == "checkbox":
                    if el.is_selected() != bool(value):
                        el.click()
                else:
                    el.clear()
                    el.send_keys(str(value))

            self.retry(one)

    def submit(self, form: WebElement | Callable[[], WebElement]) -> None:
        """Clicks the form's submit button and waits for the next page (by the mark of the old one, not by
        holding on to an element of it); the next page must show no error."""
        find = form if callable(form) else (lambda: form)
        mark = self.mark_page()
        self.retry(lambda: find().find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click())
        self.wait_for_next_page(mark, "the next page after submitting")
        self.page_ok("after submitting")
        errors = self.retry(lambda: [e.text for e in self.driver.find_elements(By.CSS_SELECTOR,
                                                                               ".form-error, .field-error")])
        assert not errors, errors

    def follow(self, link: Callable[[], WebElement], what: str) -> None:
        """Clicks a link and waits for the page it leads to."""
        mark = self.mark_page()
        self.retry(lambda: link().click())
        self.wait_for_next_page(mark, what)
        self.page_ok(what)

    def fill_and_submit(self, values: dict[str, str | bool]) -> None:
        self.fill(values)
        first = next(iter(values))
        self.submit(lambda: self.form_of(first))

    def table_rows(self) -> list[str]:
        return self.retry(lambda: [row.text for row in
                                   self.driver.find_elements(By.CSS_SELECTOR, "table.list tbody tr")])

    def download(self, link: WebElement, suffix: str) -> Path:
        before = self.browser.downloaded()
        link.click()
        return self.browser.wait_for_download(suffix, before)

    def overflow(self) -> int:
        """How many CSS pixels the page is wider than the window (0: no horizontal page scroll)."""
        return int(self.driver.execute_script(
            "var d = document.documentElement; return Math.max(d.scrollWidth, document.body.scrollWidth)"
            " - d.clientWidth;"))


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
