"""Delivery against a real HTTP receiver: retried with backoff after a failure, given up after the bounded
attempts (logged, counted), dropped when the process stops, and apprise for the other schemes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from app import metrics
from app.alerts.notify import Notification, Notifier, check_url
from tests.alerts.receiver import Receiver
from tests.support import run


def notification(*urls: str) -> Notification:
    payload = {"alert": "payments", "state": "firing", "count": 7, "threshold": 3, "window_seconds": 300,
               "query": {"service": "checkout"}, "url": "https://logs.example.com/ui?service=checkout",
               "sample": [{"created_at": "2026-11-30T12:00:00Z", "level": "ERROR", "service": "checkout",
                           "message": "payment failed"}], "at": "2026-11-30T12:00:01Z"}  # fmt: skip
    return Notification(rule_id=1, urls=list(urls), payload=payload)


def count(result: str) -> float:
    return metrics.ALERT_NOTIFICATIONS.labels(result=result)._value.get()


def deliver(notifier: Notifier, *urls: str) -> None:
    async def go() -> None:
        notifier.send(notification(*urls))
        await notifier.drain()

    run(go())


def test_a_failed_delivery_is_retried_until_it_succeeds() -> None:
    before = {r: count(r) for r in ("retry", "delivered", "failed")}
    with Receiver([500, 503, 200]) as receiver:
        deliver(Notifier(attempts=5, backoff=0.01), receiver.url)
    assert len(receiver.received) == 3
    assert receiver.received[0] == receiver.received[2] == notification().payload
    assert count("retry") - before["retry"] == 2
    assert count("delivered") - before["delivered"] == 1
    assert count("failed") == before["failed"]


def test_delivery_gives_up_after_its_attempts_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    before = count("failed")
    with Receiver([500]) as receiver, caplog.at_level(logging.WARNING, "app.alerts.notify"):
        deliver(Notifier(attempts=3, backoff=0.01), receiver.url + "/secret-token")
    assert len(receiver.received) == 3
    assert count("failed") - before == 1
    [record] = [r for r in caplog.records if "failed after 3 attempts" in r.getMessage()]
    assert "HTTP Error 500" in record.getMessage()
    assert "secret-token" not in record.getMessage()  # webhook secrets stay out of the log


def test_one_failing_receiver_does_not_hold_up_another() -> None:
    with Receiver([500]) as failing, Receiver([200]) as working:

        async def go() -> int:
            notifier = Notifier(attempts=3, backoff=30)  # the failing one waits 30 s before its 2nd try
            notifier.send(notification(failing.url, working.url))
            await asyncio.to_thread(working.wait_for, 1)
            waiting = len(notifier.tasks)
            await notifier.close()
            return waiting

        assert run(go()) == 1
        assert len(working.received) == 1 and len(failing.received) == 1


def test_a_delivery_still_retrying_at_shutdown_is_dropped_and_counted() -> None:
    before = count("dropped")
    with Receiver([500]) as receiver:

        async def go() -> None:
            notifier = Notifier(attempts=5, backoff=30)
            notifier.send(notification(receiver.url))
            await asyncio.to_thread(receiver.wait_for, 1)
            await notifier.close()

        run(go())
    assert count("dropped") - before == 1
    assert len(receiver.received) == 1


def test_other_schemes_go_through_apprise_with_a_readable_text() -> None:
    with Receiver([200]) as receiver:
        deliver(Notifier(attempts=1), receiver.url.replace("http://", "json://") + "/apprise")
    [sent] = receiver.received
    assert receiver.paths == ["/apprise"]
    assert sent["title"] == "[FIRING] payments"
    assert "7 logs matching service=checkout in the last 300 s (threshold 3)" in sent["message"]
    assert "payment failed" in sent["message"]
    assert "https://logs.example.com/ui?service=checkout" in sent["message"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://hooks.example.com/x", None),
        ("slack://T1/B1/C1", None),
        ("mailto://user:pass@example.com", None),
        ("discord://123/abc", None),
        ("https:///x", "needs a host"),
        ("gopher://example.com", "no notification service for 'gopher'"),
        ("example.com/hook", "no notification service"),
        ("https://exa mple.com", "no spaces"),
    ],
)
def test_which_urls_can_be_delivered_to(url: str, problem: str | None) -> None:
    found: Any = check_url(url)
    assert found is None if problem is None else problem in found
