"""The web view in a real browser: Debian's Chromium driven by Playwright, against the real server process
on a real PostgreSQL. Screenshots of the run are saved as results/ui-*.png."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serverproc import start_server
from tests.support import DB, log_entry

RESULTS = Path(__file__).parent.parent / "results"
CHROMIUM = shutil.which("chromium")
if CHROMIUM is None and not os.environ.get("CI"):
    # CI installs Debian's chromium (.ci/run); a developer's machine may not have it.
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright

NOW = datetime.now(UTC)


def sample() -> list[dict[str, Any]]:
    at = lambda minutes: (NOW - timedelta(minutes=minutes)).isoformat()
    return [
        log_entry(service="checkout", level="INFO", message="order placed", created_at=at(30), trace_id="trace-a"),
        log_entry(service="checkout", level="ERROR", message="payment failed", created_at=at(29), trace_id="trace-a",
                  error_type="CardDeclined", stack_trace="Traceback (most recent call last):\n  File \"pay.py\", line 7",
                  metadata={"order_id": 1042}),
        log_entry(service="search", level="WARN", message="slow query", created_at=at(20), environment="staging"),
        log_entry(service="search", level="DEBUG", message="cache miss", created_at=at(10)),
        log_entry(service="auth", level="INFO", message="user logged in", created_at=at(5), trace_id="trace-a"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        yield browser
        browser.close()


def post(url: str, entries: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
    response = httpx.post(url + "/logs", content=json.dumps({"logs": entries}), headers=headers or {})
    assert response.status_code == 200, response.text


@pytest.fixture
def seeded(server: tuple[subprocess.Popen[bytes], str], db: DB) -> str:
    _, url = server
    post(url, sample())
    return url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 800})
    page = context.new_page()
    yield page
    context.close()


def messages(page: Page) -> list[str]:
    return page.locator("#rows td.message").all_inner_texts()


def test_the_tail_shows_the_logs_newest_first(seeded: str, page: Page) -> None:
    page.goto(seeded + "/ui")
    expect(page.locator("#rows tr")).to_have_count(5)
    assert messages(page) == ["user logged in", "cache miss", "slow query", "payment failed", "order placed"]
    expect(page.locator("#rows tr.ERROR")).to_have_count(1)
    expect(page.locator("#numbers")).to_contain_text("5")
    expect(page.locator("#chart rect").first).to_be_attached()
    page.screenshot(path=str(RESULTS / "ui-tail.png"))


def test_each_filter_narrows_the_list_and_lives_in_the_url(seeded: str, page: Page) -> None:
    page.goto(seeded + "/ui")
    expect(page.locator("#rows tr")).to_have_count(5)
    page.select_option("select[name=level]", "ERROR")
    page.click("button[type=submit]")
    expect(page.locator("#rows tr")).to_have_count(1)
    assert messages(page) == ["payment failed"]
    assert "level=ERROR" in page.url
    cases = [
        ("service=search", ["cache miss", "slow query"]),
        ("environment=staging", ["slow query"]),
        ("q=LOGGED", ["user logged in"]),
        ("trace_id=trace-a", ["user logged in", "payment failed", "order placed"]),
        ("range=15m", ["user logged in", "cache miss"]),
        ("service=checkout&level=INFO", ["order placed"]),
    ]
    for query, expected in cases:
        page.goto(f"{seeded}/ui?{query}")  # a shared link opens the same view
        expect(page.locator("#rows tr")).to_have_count(len(expected))
        assert messages(page) == expected, query
    assert page.input_value("input[name=service]") == "checkout"
    assert page.input_value("select[name=level]") == "INFO"


def test_a_row_opens_its_details_and_its_trace(seeded: str, page: Page) -> None:
    page.goto(seeded + "/ui")
    page.locator("#rows tr", has_text="payment failed").click()
    expect(page.locator("#detail pre.stack_trace")).to_contain_text('File "pay.py", line 7')
    expect(page.locator("#detail pre.metadata")).to_contain_text('"order_id": 1042')
    page.screenshot(path=str(RESULTS / "ui-detail.png"))
    page.click("#detail a.trace")
    expect(page.locator("#detail table.trace-logs tr")).to_have_count(3)
    trace = page.locator("#detail table.trace-logs td.message").all_inner_texts()
    assert trace == ["order placed", "payment failed", "user logged in"]  # time order
    assert page.locator("#detail table.trace-logs tr").first.inner_text().startswith("+0 ms")


def test_a_new_log_appears_without_a_reload(seeded: str, page: Page) -> None:
    page.goto(seeded + "/ui")
    expect(page.locator("#rows tr")).to_have_count(5)
    post(seeded, [log_entry(service="checkout", level="FATAL", message="fresh from the wire")])
    expect(page.locator("#rows tr").first).to_contain_text("fresh from the wire", timeout=15_000)
    expect(page.locator("#rows tr")).to_have_count(6)


def test_older_pages_follow_the_cursor(
    server: tuple[subprocess.Popen[bytes], str], db: DB, page: Page
) -> None:
    _, url = server
    post(
        url,
        [
            log_entry(message=f"bulk {i}", created_at=(NOW - timedelta(seconds=i)).isoformat())
            for i in range(150)
        ],
    )
    page.goto(url + "/ui")
    expect(page.locator("#rows tr")).to_have_count(100)
    page.click("#older")
    expect(page.locator("#rows tr")).to_have_count(150)
    expect(page.locator("#older")).to_be_hidden()


def test_the_page_works_with_an_api_key(db: DB, database_url: str, tmp_path: Path, page: Page) -> None:
    process, url = start_server(
        {"DATABASE_URL": database_url, "API_KEYS": "reader-key", "INGEST_API_KEYS": "app"}, tmp_path
    )
    try:
        post(url, sample(), {"X-API-Key": "app"})
        page.goto(url + "/ui")
        page.fill("#key-dialog input[name=key]", "reader-key")
        page.click("#key-dialog button[type=submit]")
        expect(page.locator("#rows tr")).to_have_count(5)
        assert "reader-key" not in page.url
        assert page.evaluate("sessionStorage.getItem('logsave-api-key')") == "reader-key"
    finally:
        process.kill()
        process.wait(10)
