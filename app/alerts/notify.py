"""Delivering alert notifications: a JSON POST to http(s) URLs, apprise for every other scheme.

Each delivery (one notification to one URL) is its own asyncio task, so a slow or failing receiver holds up
neither ingest nor the other rules' evaluations nor the other URLs. A failed attempt (a network error, a
non-2xx answer, apprise reporting failure) is retried with exponential backoff, a bounded number of times;
each outcome is counted in /metrics (`logsave_alert_notifications_total{result}`) and a failure is logged.

Delivery is at most once per state change: the evaluator records the new state in PostgreSQL before it
hands the notification here, so a process that stops while a delivery is still being retried drops it
(counted as `dropped`, logged) and nothing sends it again; the next state change or renotify does.

Both the POST (urllib) and apprise are synchronous, so each attempt runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from app import metrics

log = logging.getLogger(__name__)

WEB = ("http", "https")
MAX_URL = 2000


@dataclass
class Notification:
    """What one state change says, to every URL of its rule."""

    rule_id: int
    urls: list[str]
    payload: dict[str, Any]

    def text(self) -> tuple[str, str]:
        """A title and a body for chat and mail (apprise)."""
        p = self.payload
        title = f"[{p['state'].upper()}] {p['alert']}"
        filters = ", ".join(f"{k}={v}" for k, v in p["query"].items()) or "every log"
        body = (
            f"{p['count']} logs matching {filters} in the last {p['window_seconds']} s "
            f"(threshold {p['threshold']}) at {p['at']}.\n"
        )
        for entry in p["sample"][:3]:
            body += f"\n{entry['created_at']} {entry['level']} {entry['service']}: {entry['message'][:200]}"
        return title, f"{body}\n\nThe logs: {p['url']}"


def check_url(url: str) -> str | None:
    """Why nothing could deliver to this URL, or None when something can."""
    if len(url) > MAX_URL:
        return f"at most {MAX_URL} characters"
    if any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in url):
        return "no spaces or control characters"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme in WEB:
        return None if parts.hostname else "an http(s) URL needs a host"
    import apprise  # only where a rule is checked: Lambda's cold start does not pay for its plugins

    if not parts.scheme or apprise.Apprise.instantiate(url) is None:
        return (
            f"no notification service for {url.split(':', 1)[0]!r} URLs: use http(s):// (a JSON POST) or "
            "a URL apprise knows (slack://, discord://, msteams://, mailto://, json://, …)"
        )
    return None


@dataclass
class Notifier:
    """Runs deliveries in the background; `drain` waits for them (Lambda), `close` drops the rest."""

    attempts: int = 5
    backoff: float = 1.0  # seconds before the 2nd attempt, doubled for each next one
    timeout: float = 10.0  # seconds one attempt may take
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def send(self, notification: Notification) -> None:
        for url in notification.urls:
            task = asyncio.create_task(self._deliver(notification, url))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.gather(*self.tasks)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _deliver(self, notification: Notification, url: str) -> None:
        where = _redacted(url)
        try:
            for attempt in range(1, self.attempts + 1):
                try:
                    await asyncio.wait_for(asyncio.to_thread(_attempt, notification, url, self.timeout),
                                           self.timeout + 1)  # fmt: skip
                except Exception as exc:  # noqa: BLE001 - any failure of the receiver is a failed attempt
                    if attempt == self.attempts:
                        metrics.ALERT_NOTIFICATIONS.labels(result="failed").inc()
                        log.warning(
                            "alert notification failed after %d attempts: rule %d to %s: %s: %s",
                            attempt, notification.rule_id, where, type(exc).__name__, exc,
                        )  # fmt: skip
                        return
                    metrics.ALERT_NOTIFICATIONS.labels(result="retry").inc()
                    log.info("alert notification attempt %d to %s failed: %s", attempt, where, exc)
                    await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
                else:
                    metrics.ALERT_NOTIFICATIONS.labels(result="delivered").inc()
                    return
        except asyncio.CancelledError:
            metrics.ALERT_NOTIFICATIONS.labels(result="dropped").inc()
            log.warning("alert notification dropped at shutdown: rule %d to %s", notification.rule_id, where)
            raise


def _attempt(notification: Notification, url: str, timeout: float) -> None:
    """One delivery attempt (in a worker thread); raises when it failed."""
    if urlsplit(url).scheme in WEB:
        request = urllib.request.Request(
            url,
            data=json.dumps(notification.payload).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "log-save-server alerts"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()  # urlopen raises HTTPError on a non-2xx answer
        return
    import apprise

    sender = apprise.Apprise()
    sender.add(url)
    title, body = notification.text()
    if not sender.notify(title=title, body=body):
        raise RuntimeError("apprise could not deliver it")


def _redacted(url: str) -> str:
    # Webhook URLs carry their secret in the path or the user part: the log names the service and host only.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}"
