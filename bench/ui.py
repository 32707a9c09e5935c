"""The web view's speed on a big table: how long `/ui` takes to show its first page of logs, and to show
a filtered one, in Debian's chromium driven by Playwright (as the tests drive it), against the real server.
Timed from navigation (or the click on Apply) until the rows are on screen. And the API under the page:
GET /logs's first page, GET /logs/facets over the last 24 h (from the summary, and from the sample), and how
long a log takes from its POST's answer (committed) to its event on GET /logs/stream."""

from __future__ import annotations

import json
import shutil
import statistics
import threading
import time
from typing import Any
from urllib.parse import quote

import httpx

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
RUNS = 5
API_RUNS = 15
# The service of the logs the stream is timed with; the scale suite deletes them afterwards.
STREAM_SERVICE = "bench-stream"


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


def api(url: str) -> dict[str, Any]:
    """p50 (ms) of GET /logs's first page and GET /logs/facets for 24 h, API_RUNS each, and of a log's way
    from its POST's answer to its event on GET /logs/stream, RUNS times."""
    with httpx.Client(base_url=url, timeout=60) as client:
        return {
            "first_page_p50_ms": _p50(lambda: client.get("/logs", params={"limit": 100})),
            "facets_24h_p50_ms": _p50(lambda: client.get("/logs/facets")),
            "facets_24h_sampled_p50_ms": _p50(
                lambda: client.get("/logs/facets", params={"environment": "production"})
            ),
            "stream_delivery_p50_ms": round(statistics.median(_stream_delays(url)), 1),
        }


def _p50(call: Any) -> float:
    times = []
    for _ in range(API_RUNS):
        started = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return round(statistics.median(times), 1)


def _stream_delays(url: str) -> list[float]:
    arrived: dict[str, float] = {}
    ready, done = threading.Event(), threading.Event()

    def read() -> None:
        with httpx.stream(
            "GET", url + "/logs/stream", params={"service": STREAM_SERVICE}, timeout=60
        ) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                ready.set()
                if line.startswith("data: "):
                    arrived[json.loads(line[6:])["message"]] = time.perf_counter()
                    if len(arrived) == RUNS:
                        done.set()
                        return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not ready.wait(30):
        raise RuntimeError("GET /logs/stream did not answer")
    committed = {}
    for i in range(RUNS):
        entry = {"service": STREAM_SERVICE, "level": "INFO", "message": f"stream {i}"}
        response = httpx.post(url + "/logs", json={"logs": [entry]}, timeout=30)
        response.raise_for_status()
        committed[f"stream {i}"] = time.perf_counter()
        time.sleep(0.3)  # spread over the stream's polls
    if not done.wait(60):
        raise RuntimeError(f"GET /logs/stream delivered {len(arrived)} of {RUNS} logs")
    reader.join(10)
    return [(arrived[message] - at) * 1000 for message, at in committed.items()]
