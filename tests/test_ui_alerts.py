"""The Alerts page in a real browser (Debian's Chromium driven by Playwright, as tests/test_ui.py), against
the real server process: a rule created from the page, evaluated by the server, shown firing with its
count, opened as the matching logs in the Logs page, and deleted. Screenshot: results/ui-alerts.png."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.alerts.receiver import Receiver
from tests.serverproc import start_server
from tests.support import DB, log_entry

RESULTS = Path(__file__).parent.parent / "results"
CHROMIUM = shutil.which("chromium")
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        context = browser.new_context(viewport={"width": 1400, "height": 800})
        yield context.new_page()
        context.close()
        browser.close()


@pytest.fixture
def served(db: DB, database_url: str, tmp_path: Path) -> Iterator[str]:
    # Evaluated every half second: the page's refresh shows the state the server moved the rule to.
    process: subprocess.Popen[bytes]
    process, url = start_server({"DATABASE_URL": database_url, "ALERT_INTERVAL": "0.5"}, tmp_path)
    yield url
    process.kill()
    process.wait(10)


def test_a_rule_made_on_the_page_fires_and_opens_its_logs(served: str, page: Page) -> None:
    entries = [log_entry(service="checkout", level="ERROR", message=f"payment failed {i}") for i in range(3)]
    entries.append(log_entry(service="search", level="ERROR", message="not this one"))
    assert httpx.post(served + "/logs", json={"logs": entries}).status_code == 200
    with Receiver() as receiver:
        page.goto(served + "/ui")
        page.click("#alerts-link")
        expect(page).to_have_url(served + "/ui/alerts")
        page.fill("input[name=name]", "checkout errors")
        page.fill("input[name=service]", "checkout")
        page.fill("input[name=threshold]", "3")
        page.fill("input[name=notify]", receiver.url)
        page.click("#new-rule button[type=submit]")
        row = page.locator("#rules tr", has_text="checkout errors")
        expect(row.locator("td.state")).to_have_text("firing", timeout=20_000)
        expect(row.locator("td.count")).to_have_text("3")
        assert receiver.wait_for(1)[0]["state"] == "firing"

        page.fill("input[name=name]", "bad")
        page.fill("input[name=notify]", "gopher://example.com")
        page.click("#new-rule button[type=submit]")
        expect(page.locator("#errors")).to_contain_text("notify.0: no notification service for 'gopher'")
        RESULTS.mkdir(exist_ok=True)
        page.screenshot(path=str(RESULTS / "ui-alerts.png"))

        row.locator("td.name").click()
        expect(page.locator("#rows tr")).to_have_count(3)
        assert "service=checkout" in page.url and "min_level=ERROR" in page.url

        page.goto(served + "/ui/alerts")
        page.on("dialog", lambda dialog: dialog.accept())
        page.locator("#rules tr", has_text="checkout errors").locator("button.delete").click()
        expect(page.locator("#rules tr")).to_have_count(0)
    assert httpx.get(served + "/alerts").json() == {"alerts": []}
