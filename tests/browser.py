"""A headless Chromium driven by Selenium, for the tests that open Netron and JupyterLab as a person would.

Chromium and its WebDriver come from the Debian packages ``chromium`` and ``chromium-driver``, which
``make system-packages`` (run by ``make test``) installs when they are missing. Where they could not be
installed the browser tests skip with `MISSING_BROWSER` — the only reason they skip.
"""
from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

#: Debian's Chromium and its WebDriver.
CHROMIUM = "chromium"
CHROMEDRIVER = "chromedriver"
#: The issue's flags: headless, no sandbox (CI runs as root), no GPU, no background network traffic.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--window-size=1280,1600")
#: Longest wait for a page element, in seconds (JupyterLab's first start builds its kernel; CI is slow).
PAGE_TIMEOUT_S = 120
MISSING_BROWSER = (f"browser test skipped: {CHROMIUM} and {CHROMEDRIVER} are not installed and could not be "
                   "installed here (run `make system-packages` as root, or `apt-get install chromium chromium-driver`)")


def require_chromium() -> tuple[str, str]:
    """Paths of Chromium and chromedriver, or skip the test with `MISSING_BROWSER`."""
    chromium, driver = shutil.which(CHROMIUM), shutil.which(CHROMEDRIVER)
    if not (chromium and driver):
        pytest.skip(MISSING_BROWSER)
    return chromium, driver


@contextlib.contextmanager
def headless_chromium() -> Iterator[Any]:
    """A Selenium WebDriver for a headless Chromium, quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = PAGE_TIMEOUT_S) -> Any:
    """The first truthy ``condition(driver)`` within ``timeout`` seconds; fails naming ``what`` and the page text."""
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition(driver)
        except WebDriverException:
            value = None
        if value:
            return value
        time.sleep(0.25)
    body = driver.find_element("tag name", "body").text
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; the page shows:\n{body[:2000]}")


def visible(driver: Any, css: str) -> Any:
    """The first displayed element matching ``css``, or None."""
    return next((e for e in driver.find_elements("css selector", css) if e.is_displayed()), None)
