"""The evaluation pass against a real HTTP receiver: firing once, nothing more while firing, resolved,
renotify, and two evaluators of one rule notifying once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from app.alerts import evaluate
from app.alerts.notify import Notifier
from app.config import Settings
from app.database import Database
from tests.alerts.receiver import Receiver
from tests.support import DB, log_entry, run


@pytest.fixture
def receiver() -> Any:
    with Receiver() as receiver:
        yield receiver


def evaluate_now(settings: Settings, passes: int = 1) -> list[dict[str, Any]]:
    """`passes` evaluations at once, each a process of its own (its own pool); their deliveries awaited."""

    async def go() -> list[dict[str, Any]]:
        databases = [Database(settings, allow_embedded=False) for _ in range(passes)]
        notifier = Notifier(backoff=0.01)
        try:
            done = await asyncio.gather(*(evaluate.run_once(d, notifier) for d in databases))
            await notifier.drain()
            return list(done)
        finally:
            for database in databases:
                await database.close()

    return run(go())


def post_logs(client: TestClient, count: int, **fields: Any) -> None:
    entries = [log_entry(level="ERROR", message=f"payment failed {i}", **fields) for i in range(count)]
    response = client.post("/logs", json={"logs": entries})
    assert response.status_code == 200, response.text


def create(client: TestClient, receiver: Receiver, **fields: Any) -> dict[str, Any]:
    body = {"name": "payments", "query": {"service": "checkout", "level": "ERROR"}, "threshold": 3,
            "window_seconds": 600, "notify": [receiver.url + "/hook"], **fields}  # fmt: skip
    response = client.post("/alerts", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_firing_once_then_nothing_then_resolved(
    client: TestClient, db: DB, settings: Settings, receiver: Receiver
) -> None:
    rule = create(client, receiver)
    post_logs(client, 2)
    post_logs(client, 5, service="search")  # not this rule's
    evaluate_now(settings)
    assert receiver.received == []
    assert client.get(f"/alerts/{rule['id']}").json()["last_count"] == 2

    post_logs(client, 1)
    evaluate_now(settings)
    [firing] = receiver.received
    assert receiver.paths == ["/hook"]
    assert firing["alert"] == "payments" and firing["state"] == "firing"
    assert (firing["count"], firing["threshold"], firing["window_seconds"]) == (3, 3, 600)
    assert firing["query"] == {"service": "checkout", "level": "ERROR"}
    assert [s["message"] for s in firing["sample"]] == [
        "payment failed 0",
        "payment failed 1",
        "payment failed 0",
    ]
    link = urlsplit(firing["url"])
    params = parse_qs(link.query)
    assert link.path == "/ui" and params["service"] == ["checkout"] and params["level"] == ["ERROR"]
    # The link's since/until are the window: GET /logs with them lists exactly the logs counted.
    listed = client.get("/logs", params={k: v[0] for k, v in params.items()}).json()["logs"]
    assert len(listed) == 3
    at = datetime.fromisoformat(firing["at"])
    assert datetime.fromisoformat(params["until"][0]) == at
    assert at - datetime.fromisoformat(params["since"][0]) == timedelta(seconds=600)
    state = client.get(f"/alerts/{rule['id']}").json()
    assert state["state"] == "firing" and state["last_count"] == 3 and state["last_notified_at"] is not None

    post_logs(client, 4)
    evaluate_now(settings)
    assert len(receiver.received) == 1  # still firing: nothing more
    assert client.get(f"/alerts/{rule['id']}").json()["last_count"] == 7

    db.fetch("UPDATE logs SET deleted = true WHERE service = 'checkout'")
    evaluate_now(settings)
    assert [n["state"] for n in receiver.received] == ["firing", "resolved"]
    assert receiver.received[1]["count"] == 0 and receiver.received[1]["sample"] == []
    assert client.get(f"/alerts/{rule['id']}").json()["state"] == "ok"


def test_the_window_counts_only_recent_logs(
    client: TestClient, db: DB, settings: Settings, receiver: Receiver
) -> None:
    create(client, receiver, window_seconds=60, threshold=1)
    old = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    post_logs(client, 3, created_at=old)
    evaluate_now(settings)
    assert receiver.received == []
    assert client.get("/alerts").json()["alerts"][0]["last_count"] == 0


def test_renotify_after_its_seconds_and_never_with_zero(
    client: TestClient, db: DB, settings: Settings, receiver: Receiver
) -> None:
    again = create(client, receiver, name="again", renotify_seconds=3600)
    create(client, receiver, name="once", renotify_seconds=0)
    post_logs(client, 3)
    evaluate_now(settings)
    assert sorted(n["alert"] for n in receiver.received) == ["again", "once"]
    evaluate_now(settings)
    assert len(receiver.received) == 2
    # An hour and a bit later, as far as the rules' state says.
    db.fetch("UPDATE alert_rules SET last_notified_at = last_notified_at - interval '61 minutes'")
    evaluate_now(settings)
    assert sorted(n["alert"] for n in receiver.received) == ["again", "again", "once"]
    assert receiver.received[2]["state"] == "firing"
    evaluate_now(settings)
    assert len(receiver.received) == 3
    assert client.get(f"/alerts/{again['id']}").json()["state"] == "firing"


def test_two_evaluators_of_one_rule_notify_once(
    client: TestClient, db: DB, settings: Settings, receiver: Receiver
) -> None:
    create(client, receiver)
    post_logs(client, 3)
    done = evaluate_now(settings, passes=2)
    assert len(receiver.received) == 1
    assert sum(d.get("alert_notifications", 0) for d in done) == 1


def test_two_evaluations_that_overlap_without_the_lock_notify_once(
    client: TestClient, db: DB, settings: Settings, receiver: Receiver
) -> None:
    # Both read the rule as ok, both count past the threshold: the conditional UPDATE lets one notify.
    create(client, receiver)
    post_logs(client, 3)

    async def go() -> list[Any]:
        database = Database(settings, allow_embedded=False)
        try:
            pool = await database.pool()
            async with pool.acquire() as one, pool.acquire() as two:
                [rule] = await one.fetch("SELECT * FROM alert_rules")
                at = datetime.now(UTC)
                return await asyncio.gather(
                    evaluate.evaluate(one, rule, at), evaluate.evaluate(two, rule, at)
                )
        finally:
            await database.close()

    notifications = [n for n in run(go()) if n is not None]
    assert len(notifications) == 1 and notifications[0].payload["state"] == "firing"


def test_a_deleted_rule_is_not_evaluated(
    client: TestClient, db: DB, settings: Settings, receiver: Receiver
) -> None:
    rule = create(client, receiver)
    post_logs(client, 3)
    assert client.delete(f"/alerts/{rule['id']}").status_code == 204
    assert evaluate_now(settings) == [{"alert_rules_evaluated": 0, "alert_notifications": 0}]
    assert receiver.received == []


def test_a_server_process_evaluates_on_its_interval_and_counts_deliveries(
    db: DB, database_url: str, tmp_path: Any, receiver: Receiver
) -> None:
    from tests.serverproc import start_server

    process, url = start_server({"DATABASE_URL": database_url, "ALERT_INTERVAL": "0.3"}, tmp_path)
    try:
        body = {"name": "any error", "query": {"min_level": "ERROR"}, "threshold": 1, "window_seconds": 60,
                "notify": [receiver.url]}  # fmt: skip
        assert httpx.post(url + "/alerts", json=body).status_code == 201
        assert httpx.post(url + "/logs", json={"logs": [log_entry(level="FATAL")]}).status_code == 200
        [firing] = receiver.wait_for(1)
        assert firing["state"] == "firing" and firing["count"] == 1
        delivered = 'logsave_alert_notifications_total{result="delivered"} 1.0'
        # Counted once the receiver's answer is read, just after it recorded the notification.
        for _ in range(100):
            if delivered in httpx.get(url + "/metrics").text:
                break
            time.sleep(0.05)
        assert delivered in httpx.get(url + "/metrics").text
    finally:
        process.kill()
        process.wait(10)


def test_the_lambda_schedule_evaluates_and_waits_for_its_deliveries(
    db: DB, database_url: str, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    from tests.test_handler import Context, event, load_handler

    lambda_handler = load_handler(monkeypatch, DATABASE_URL=database_url)
    db.fetch(
        "INSERT INTO alert_rules (name, query, threshold, window_seconds, notify, renotify_seconds)"
        " VALUES ('any', '{}', 2, 2678400, $1, 0)",  # a window wide enough for the event's logs
        [receiver.url],
    )
    assert lambda_handler.handler(event("apigw-http-v2"), Context())["statusCode"] == 200  # two logs
    scheduled = event("schedule/eventbridge-scheduled")
    done = lambda_handler.handler(scheduled, Context())
    assert done["alert_rules_evaluated"] == 1 and done["alert_notifications"] == 1
    assert [n["state"] for n in receiver.received] == ["firing"]  # delivered before the invocation ended


def test_two_server_processes_evaluating_one_rule_notify_once(
    db: DB, database_url: str, tmp_path: Any, receiver: Receiver
) -> None:
    from tests.serverproc import start_server

    env = {"DATABASE_URL": database_url, "ALERT_INTERVAL": "0.2"}
    servers = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        servers.append(start_server(env, tmp_path / name))

    def evaluated_at() -> datetime:
        return db.fetch("SELECT last_evaluated_at FROM alert_rules")[0]["last_evaluated_at"]

    try:
        url = servers[0][1]
        body = {"name": "any error", "query": {"min_level": "ERROR"}, "threshold": 1, "window_seconds": 600,
                "notify": [receiver.url], "renotify_seconds": 0}  # fmt: skip
        assert httpx.post(url + "/alerts", json=body).status_code == 201
        assert httpx.post(url + "/logs", json={"logs": [log_entry(level="ERROR")]}).status_code == 200
        receiver.wait_for(1)
        # Many more passes by either server (each a fifth of a second apart) while the rule keeps firing.
        later = evaluated_at() + timedelta(seconds=2)
        for _ in range(300):
            if evaluated_at() > later:
                break
            time.sleep(0.05)
        assert evaluated_at() > later
        assert [n["state"] for n in receiver.received] == ["firing"]
    finally:
        for process, _ in servers:
            process.kill()
            process.wait(10)


def test_a_rule_counts_what_get_logs_lists_with_exclusions_and_nested_metadata(
    client: TestClient, db: DB, settings: Settings, receiver: Receiver
) -> None:
    query = {"min_level": "ERROR", "not.service": "search", "meta.http.status": 500}
    rule = create(client, receiver, query=query, threshold=100)
    status = lambda code: {"http": {"status": code}}
    post_logs(client, 2, metadata=status(500))
    post_logs(client, 1, metadata=status(500), service="search")
    post_logs(client, 1, metadata=status(200))
    evaluate_now(settings)
    listed = client.get("/logs", params={**query, "meta.http.status": "500"}).json()["logs"]
    assert client.get(f"/alerts/{rule['id']}").json()["last_count"] == len(listed) == 2


def test_a_search_rule_counts_the_same_with_and_without_the_search_index(
    client: TestClient, db: DB, settings: Settings, receiver: Receiver
) -> None:
    entries = [log_entry(level="ERROR", message=f"card declined for req-{i:04d}7f3a9c2e", metadata={"order_id": f"ord-{i % 3}"})
               for i in range(30)]  # fmt: skip
    assert client.post("/logs", json={"logs": entries}).status_code == 200
    rules = [
        create(client, receiver, query={"q": "req-00077f3a9c2e"}, threshold=100),
        create(client, receiver, query={"meta.order_id": "ord-1", "q": '"CARD declined"'}, threshold=100),
        create(client, receiver, query={"q": "declined for"}, threshold=100),
    ]
    counts = []
    for search in (True, False):
        db.fetch("UPDATE alert_rules SET last_evaluated_at = NULL, last_count = NULL")
        evaluate_now(settings.model_copy(update={"search_index": search}))
        counts.append([client.get(f"/alerts/{r['id']}").json()["last_count"] for r in rules])
    assert counts[0] == counts[1] == [1, 10, 30]
