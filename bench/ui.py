"""The web view's speed on a big table: how long `/ui` takes to show its first page of logs, and to show
a filtered one, in Debian's chromium driven by Playwright (as the tests drive it), against the real server.
Timed from navigation (or the click on Apply) until the rows are on screen."""

from __future__ import annotations

import shutil
import time
from typing import Any
from urllib.parse import quote

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
RUNS = 5


def measure(url: str, service: str, since: str) -> dict[str, Any]:
    """p50 of RUNS page loads and RUNS filter applications (ms), over the range from `since` (RFC 3339);
    nothing when chromium is not installed."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return {"ui": "chromium not installed"}
    from playwright.sync_api import sync_playwright

    loads, filters = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            for _ in range(RUNS):
                started = time.perf_counter()
                page.goto(f"{url}/ui?range=custom&since={quote(since)}")
                page.wait_for_selector("#rows tr")
                loads.append((time.perf_counter() - started) * 1000)
                page.fill("input[name=service]", service)
                page.select_option("select[name=level]", "ERROR")
                started = time.perf_counter()
                with page.expect_response(lambda r: "/logs?" in r.url and "level=ERROR" in r.url):
                    page.click("button[type=submit]")
                page.wait_for_function(
                    "[...document.querySelectorAll('#rows tr td:nth-child(2)')].every(td => td.textContent === 'ERROR')"
                )
                filters.append((time.perf_counter() - started) * 1000)
        finally:
            browser.close()
    return {
        "ui_load_p50_ms": round(sorted(loads)[len(loads) // 2], 1),
        "ui_filter_p50_ms": round(sorted(filters)[len(filters) // 2], 1),
    }
