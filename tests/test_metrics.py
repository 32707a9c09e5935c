"""GET /metrics: the counters say what happened, in one process and added up over several workers."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.serverproc import start_server
from tests.support import DB, log_entry

JSON = {"Content-Type": "application/json"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def batch(n: int) -> bytes:
    return json.dumps({"logs": [log_entry()] * n}).encode()


def test_counters_follow_what_was_sent(client: TestClient, db: DB) -> None:
    before = samples(client.get("/metrics").text)
    assert client.post("/logs", content=batch(7), headers=JSON).status_code == 200
    assert (
        client.post("/logs", content=batch(3), headers={**JSON, "Idempotency-Key": "m-1"}).status_code == 200
    )
    assert (
        client.post("/logs", content=batch(3), headers={**JSON, "Idempotency-Key": "m-1"}).status_code == 200
    )
    assert client.post("/logs", content=b'{"logs": [{}]}', headers=JSON).status_code == 422
    assert client.post("/logs", content=b"{", headers=JSON).status_code == 400
    assert client.post("/logs", content=batch(1), headers={"Content-Type": "text/plain"}).status_code == 415
    after = samples(client.get("/metrics").text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("logsave_logs_saved_total") == 10 == db.count()
    assert delta("logsave_requests_total", route="/logs", status="200") == 3
    assert delta("logsave_requests_total", route="/logs", status="422") == 1
    assert delta("logsave_rejected_total", reason="validation") == 2
    assert delta("logsave_rejected_total", reason="unsupported") == 1
    assert delta("logsave_rejected_total", reason="replay") == 1
    assert delta("logsave_request_duration_seconds_count", route="/logs") == 6
    assert delta("logsave_commit_rows_count") == 2
    assert delta("logsave_commit_rows_sum") == 10
    assert value(after, "logsave_write_queue_rows") == 0


def test_unknown_paths_share_one_label(client: TestClient) -> None:
    for path in ("/a", "/b", "/wp-login.php"):
        client.get(path)
    routes = {
        dict(labels).get("route")
        for name, labels in samples(client.get("/metrics").text)
        if name == "logsave_requests_total"
    }
    assert "other" in routes and not routes & {"/a", "/b", "/wp-login.php"}


def test_two_workers_add_up(db: DB, database_url: str, tmp_path: Path) -> None:
    process, url = start_server({"DATABASE_URL": database_url, "WEB_CONCURRENCY": "2"}, tmp_path)
    try:
        with httpx.Client(base_url=url, headers=JSON) as client:
            for _ in range(20):  # new connections, so both workers take some
                assert httpx.post(url + "/logs", content=batch(5), headers=JSON).status_code == 200
            totals = {
                value(samples(client.get("/metrics").text), "logsave_logs_saved_total") for _ in range(6)
            }
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    # Whichever worker answered, the total is the sum over both.
    assert totals == {100.0}
    assert db.count() == 100
