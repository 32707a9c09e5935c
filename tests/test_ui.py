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
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

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


def sample() -> list[dict[str, Any]]:
    # Minutes before now, when the test seeds (not when the module was imported: a full run takes minutes).
    now = datetime.now(UTC)
    at = lambda minutes: (now - timedelta(minutes=minutes)).isoformat()
    return [
        log_entry(service="checkout", level="INFO", message="order placed", created_at=at(30), trace_id="trace-a"),
        log_entry(service="checkout", level="ERROR", message="payment failed", created_at=at(29), trace_id="trace-a",
                  error_type="CardDeclined", stack_trace="Traceback (most recent call last):\n  File \"pay.py\", line 7",
                  metadata={"order_id": 1042}),
        log_entry(service="search", level="WARN", message="slow query", created_at=at(20), environment="staging",
                  user_id="u-7", metadata={"http": {"status": 500, "route": "/search"}, "region": "eu"}),
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
    expect(page.locator("#chips .chip")).to_have_count(2)  # the link's filters, each a removable chip
    expect(page.locator("#chips .chip[data-name=service][data-chip-value=checkout]")).to_be_visible()
    expect(page.locator("#chips .chip[data-name=level][data-chip-value=INFO]")).to_be_visible()
    # The search box takes a quoted phrase as typed: whole words, any case (docs/read-api.md).
    page.goto(seeded + "/ui")
    page.fill("input[name=q]", '"LOGGED  in"')
    page.click("button[type=submit]")
    expect(page.locator("#rows tr")).to_have_count(1)
    assert messages(page) == ["user logged in"]
    page.fill("input[name=q]", '"logge"')  # not a whole word
    page.click("button[type=submit]")
    expect(page.locator("#rows tr")).to_have_count(0)


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
            log_entry(message=f"bulk {i}", created_at=(datetime.now(UTC) - timedelta(seconds=i)).isoformat())
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
        expect(page.locator("#facets section[data-facet=service] li")).to_have_count(3)
        # The stream sends the key as a header too (fetch, not EventSource): live without polling.
        expect(page.locator("#live")).to_have_text("● live")
        post(url, [log_entry(message="keyed and live")], {"X-API-Key": "app"})
        expect(page.locator("#rows tr").first).to_contain_text("keyed and live", timeout=15_000)
    finally:
        process.kill()
        process.wait(10)


# --- exploring: click to filter, exclude, facets, live, the timeline, columns, keyboard, local time ---------


def url_params(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def test_a_click_on_a_list_value_filters_and_its_chip_removes_it(seeded: str, page: Page) -> None:
    page.goto(seeded + "/ui")
    expect(page.locator("#rows tr")).to_have_count(5)
    page.locator("#rows [data-field=service][data-value=search]").first.click()
    expect(page.locator("#rows tr")).to_have_count(2)
    assert messages(page) == ["cache miss", "slow query"]
    assert url_params(page)["service"] == ["search"]
    assert page.locator("#detail").is_hidden()  # a value click filters; it does not open the row
    page.screenshot(path=str(RESULTS / "ui-click-filter.png"))
    page.click("#chips .chip[data-name=service] button.remove")
    expect(page.locator("#rows tr")).to_have_count(5)
    assert "service" not in url_params(page)


def test_a_nested_metadata_value_in_the_details_filters(seeded: str, page: Page) -> None:
    page.goto(seeded + "/ui")
    page.locator("#rows tr", has_text="slow query").click()
    status = page.locator('#detail pre.metadata [data-field="meta.http.status"]')
    expect(status).to_have_attribute("data-value", "500")
    expect(page.locator('#detail span.value[data-field="user_id"][data-value="u-7"]')).to_be_visible()
    page.screenshot(path=str(RESULTS / "ui-detail.png"))
    status.click()
    expect(page.locator("#rows tr")).to_have_count(1)
    assert messages(page) == ["slow query"]
    assert url_params(page)["meta.http.status"] == ["500"]
    assert (
        httpx.get(seeded + "/logs", params={"meta.http.status": "500"}).json()["logs"][0]["message"]
        == "slow query"
    )


def test_alt_click_and_the_exclude_button_exclude(seeded: str, page: Page) -> None:
    page.goto(seeded + "/ui")
    expect(page.locator("#rows tr")).to_have_count(5)
    page.locator("#rows [data-field=level][data-value=ERROR]").click(modifiers=["Alt"])
    expect(page.locator("#rows tr")).to_have_count(4)
    expect(page.locator("#rows tr.ERROR")).to_have_count(0)
    assert url_params(page)["not.level"] == ["ERROR"]
    expect(page.locator("#chips .chip.not[data-name='not.level']")).to_contain_text("level ≠ ERROR")
    page.locator("#rows tr", has_text="cache miss").click()
    page.click("#detail button.exclude[data-field=service]")
    expect(page.locator("#rows tr")).to_have_count(2)
    assert messages(page) == ["user logged in", "order placed"]
    assert url_params(page)["not.service"] == ["search"]


def test_facets_count_the_matching_logs_and_filter(seeded: str, page: Page) -> None:
    page.goto(seeded + "/ui")
    service = page.locator("#facets section[data-facet=service]")
    expect(service.locator("li")).to_have_count(3)
    assert service.locator("li").first.inner_text().split() == ["checkout", "2", "≠"]
    expect(
        page.locator('#facets section[data-facet="meta.http.status"] span.value[data-value="500"]')
    ).to_be_visible()
    page.screenshot(path=str(RESULTS / "ui-facets.png"))
    page.click("#facets section[data-facet=level] span.value[data-value=INFO]")
    expect(page.locator("#rows tr")).to_have_count(2)
    expect(service.locator("li")).to_have_count(2)  # the facets follow the filters
    page.click("#facets section[data-facet=service] button.exclude[data-value=auth]")
    expect(page.locator("#rows tr")).to_have_count(1)
    assert messages(page) == ["order placed"]


def test_a_new_log_arrives_over_the_stream(seeded: str, page: Page) -> None:
    page.goto(seeded + "/ui?not.service=noise")
    expect(page.locator("#live")).to_have_text("● live")
    expect(page.locator("#live[data-ready=true]")).to_be_attached()  # caught up once with GET /logs
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/logs?" in r.url else None)
    post(seeded, [log_entry(service="noise", message="filtered out")])
    post(seeded, [log_entry(service="checkout", level="FATAL", message="fresh from the stream")])
    expect(page.locator("#rows tr").first).to_contain_text("fresh from the stream", timeout=15_000)
    expect(page.locator("#rows tr")).to_have_count(6)
    assert polls == []  # it came over GET /logs/stream, not by polling


def test_without_streams_the_page_polls(seeded: str, page: Page) -> None:
    page.route("**/logs/stream?*", lambda route: route.abort())  # as where a proxy buffers or drops it
    page.goto(seeded + "/ui")
    expect(page.locator("#live")).to_have_text("↻ polling")
    post(seeded, [log_entry(service="checkout", message="fresh from a poll")])
    expect(page.locator("#rows tr").first).to_contain_text("fresh from a poll", timeout=15_000)


def test_the_keyboard_and_n_new_while_reading(seeded: str, page: Page) -> None:
    page.goto(seeded + "/ui")
    expect(page.locator("#live")).to_have_text("● live")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    expect(page.locator("#rows tr.selected")).to_contain_text("cache miss")
    page.keyboard.press("Enter")
    expect(page.locator("#detail h2")).to_contain_text("DEBUG · search")
    page.keyboard.press("Escape")
    expect(page.locator("#detail")).to_be_hidden()
    post(seeded, [log_entry(message="while reading")])
    expect(page.locator("#fresh")).to_have_text("1 new", timeout=15_000)
    expect(page.locator("#rows tr")).to_have_count(5)  # the reader's rows stay where they are
    page.click("#fresh")
    expect(page.locator("#rows tr").first).to_contain_text("while reading")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.name") == "q"


def chart_range(page: Page) -> tuple[datetime, datetime]:
    chart = page.locator("#chart")
    return (datetime.fromisoformat(chart.get_attribute("data-since")),
            datetime.fromisoformat(chart.get_attribute("data-until")))  # fmt: skip


def test_the_timeline_spans_the_range_with_empty_buckets(
    server: tuple[subprocess.Popen[bytes], str], db: DB, page: Page
) -> None:
    _, url = server
    post(url, [log_entry(message="one", created_at=(datetime.now(UTC) - timedelta(minutes=2)).isoformat()),
               log_entry(message="two", created_at=(datetime.now(UTC) - timedelta(minutes=2)).isoformat())])  # fmt: skip
    page.goto(url + "/ui?range=1h")
    buckets = page.locator("#chart[data-chart=timeline] g.bucket")
    expect(buckets.first).to_be_attached()
    assert 60 <= buckets.count() <= 61  # a minute each, the empty ones too
    expect(page.locator("#chart g.bucket:not(.empty)")).to_have_count(1)
    width = page.locator("#chart").bounding_box()["width"]
    first = page.locator("#chart g.bucket rect.slot").first.bounding_box()
    last = page.locator("#chart g.bucket rect.slot").last.bounding_box()
    chart_x = page.locator("#chart").bounding_box()["x"]
    assert first["x"] - chart_x < 0.03 * width and last["x"] + last["width"] - chart_x > 0.95 * width
    filled = page.locator("#chart g.bucket:not(.empty) rect.level-INFO").bounding_box()
    assert filled["width"] < 0.05 * width  # one minute of sixty, not a bar across the chart
    page.screenshot(path=str(RESULTS / "ui-timeline.png"))


def test_dragging_across_the_timeline_zooms_and_a_bucket_click_too(seeded: str, page: Page) -> None:
    page.goto(seeded + "/ui?range=1h")
    expect(page.locator("#chart g.bucket").first).to_be_attached()
    since, until = chart_range(page)
    box = page.locator("#chart").bounding_box()
    page.mouse.move(box["x"] + 0.25 * box["width"], box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 20, steps=5)
    page.mouse.move(box["x"] + 0.75 * box["width"], box["y"] + 20, steps=5)
    page.mouse.up()
    expect(page.locator("#rows tr")).to_have_count(3)  # 45 to 15 minutes ago: 30, 29 and 20 minutes ago
    params = url_params(page)
    assert params["range"] == ["custom"]
    got = [datetime.fromisoformat(params[name][0]) for name in ("since", "until")]
    span = until - since
    for value, fraction in zip(got, (0.25, 0.75), strict=True):
        assert abs(value - (since + fraction * span)) < 0.02 * span
    page.screenshot(path=str(RESULTS / "ui-zoom.png"))
    bucket = page.locator("#chart g.bucket:not(.empty)").filter(has_text="WARN").first
    spot = bucket.locator("rect.slot").bounding_box()
    page.mouse.click(spot["x"] + spot["width"] / 2, spot["y"] + spot["height"] / 2)
    expect(page.locator("#rows tr")).to_have_count(1)
    assert messages(page) == ["slow query"]
    params = url_params(page)
    start, end = (datetime.fromisoformat(params[name][0]) for name in ("since", "until"))
    assert end - start <= timedelta(minutes=1)


def test_columns_come_from_the_url_and_the_picker_writes_them(seeded: str, page: Page) -> None:
    page.goto(seeded + "/ui?columns=service,level,meta.http.status,message")
    expect(page.locator("#head th")).to_have_text(["time", "service", "level", "meta.http.status", "message"])
    row = page.locator("#rows tr", has_text="slow query")
    expect(row.locator("td").nth(3)).to_have_text("500")
    expect(row.locator('td [data-field="meta.http.status"]')).to_have_attribute("data-value", "500")
    page.screenshot(path=str(RESULTS / "ui-columns.png"))
    page.click("#columns summary")
    page.check("#column-choices input[value=environment]")
    expect(page.locator("#head th")).to_have_count(6)
    assert url_params(page)["columns"] == ["service,level,meta.http.status,message,environment"]
    page.uncheck("#column-choices input[value='meta.http.status']")
    assert url_params(page)["columns"] == ["service,level,message,environment"]


def test_times_are_local_with_utc_on_hover(seeded: str, browser: Browser) -> None:
    context = browser.new_context(timezone_id="Asia/Kolkata", viewport={"width": 1400, "height": 800})
    try:
        page = context.new_page()
        page.goto(seeded + "/ui")
        time_cell = page.locator("#rows tr", has_text="order placed").locator("td.time time")
        expect(time_cell).to_be_visible()
        stored = httpx.get(seeded + "/logs", params={"q": "order placed"}).json()["logs"][0]["created_at"]
        at = datetime.fromisoformat(stored)
        local = at.astimezone(ZoneInfo("Asia/Kolkata"))
        assert (
            time_cell.inner_text()
            == local.strftime("%Y-%m-%d %H:%M:%S.") + f"{local.microsecond // 1000:03d}"
        )
        assert time_cell.get_attribute("title") == stored.replace("T", " ").replace("Z", "") + " UTC"
    finally:
        context.close()


def test_the_page_never_holds_more_than_2000_logs(
    server: tuple[subprocess.Popen[bytes], str], db: DB, page: Page
) -> None:
    _, url = server
    for start in range(0, 2100, 700):
        post(url, [log_entry(message=f"bulk {i}", created_at=(datetime.now(UTC) - timedelta(seconds=i)).isoformat())
                   for i in range(start, start + 700)])  # fmt: skip
    page.goto(url + "/ui")
    expect(page.locator("#rows tr")).to_have_count(100)
    for shown in range(200, 2001, 100):
        page.click("#older")
        expect(page.locator("#rows tr")).to_have_count(shown)
    page.click("#older")
    expect(page.locator("#status")).to_contain_text("at most 2,000 logs")
    expect(page.locator("#rows tr")).to_have_count(2000)
    post(url, [log_entry(message="one more")])  # live: the newest arrives, the oldest leaves
    expect(page.locator("#fresh")).to_have_text("1 new", timeout=15_000)  # scrolled down to "Load older"
    page.click("#fresh")
    expect(page.locator("#rows tr").first).to_contain_text("one more")
    expect(page.locator("#rows tr")).to_have_count(2000)
    expect(page.locator("#older")).to_be_hidden()
