"""The agents suite's bodies carry exactly the logs our JSON arm sends: read back through the server's own
Loki mapping and through the real routes, the Loki body stores the same rows and the bulk body the same
columns ECS has; the report renders each arm's ratio and the skipped ones."""

from __future__ import annotations

import gzip
import json

import orjson
from fastapi.testclient import TestClient

from app.formats import loki
from app.intake import rows
from bench import agents, report
from bench.data import LogFactory, body, gzipped
from tests.support import DB


def test_the_loki_body_maps_back_to_the_same_rows_as_our_json() -> None:
    batch = LogFactory(3).batch(200)
    from_json = rows.parse(body(batch), 1000)
    logs, _ = loki.body(loki.streams(agents.loki_protobuf(batch), loki.PROTOBUF, 10**7), 1000)
    assert logs is not None
    from_loki = rows.parse(logs, 1000)
    assert len(from_loki) == len(from_json) == 200

    def comparable(row: tuple) -> tuple:
        # The Loki body groups logs into streams, so rows come in another order; metadata is jsonb text.
        return (*row[:-1], json.loads(row[-1]))

    assert sorted(map(comparable, from_loki), key=repr) == sorted(map(comparable, from_json), key=repr)


def test_the_bulk_body_is_a_create_and_an_ecs_document_per_log() -> None:
    batch = LogFactory(3).batch(50)
    lines = agents.es_bulk(batch).splitlines()
    assert len(lines) == 100 and all(orjson.loads(line) == {"create": {}} for line in lines[::2])
    documents = [orjson.loads(line) for line in lines[1::2]]
    for entry, document in zip(batch, documents, strict=True):
        assert document["message"] == entry["message"] and document["log.level"] == entry["level"].lower()
        assert (
            document["service"]["name"] == entry["service"] and document["trace"]["id"] == entry["trace_id"]
        )
        assert document["http"] == {"request": {"method": entry["method"]}, **entry["metadata"]["http"]}
        assert document["@timestamp"].endswith("+00:00")
    assert any("error" in d and d["error"]["stack_trace"] for d in documents)


def test_the_arms_send_the_same_batches_in_three_formats() -> None:
    batches = [LogFactory(5).batch(20)]
    arms = agents.arms(batches)
    assert list(arms) == ["json b1000-gzip-c8", "loki protobuf+snappy b1000-c8", "es bulk b1000-gzip-c8"]
    assert gzip.decompress(arms["json b1000-gzip-c8"][3][0]) == gzip.decompress(gzipped(body(batches[0])))
    assert arms["loki protobuf+snappy b1000-c8"][:3] == (agents.LOKI_PATH, loki.PROTOBUF, False)
    assert gzip.decompress(arms["es bulk b1000-gzip-c8"][3][0]).count(b'{"create":{}}') == 20


def test_the_report_gives_each_arm_its_ratio_and_says_which_were_skipped() -> None:
    arm = {"p50_ms": 300.0, "p99_ms": 400.0, "wire_bytes_per_request": 96_000, "statuses": {"200": 10}}
    data = {
        "parameters": {"target": 0.7},
        "results": {"arms": [
            {**arm, "arm": "json b1000-gzip-c8", "logs_per_s": 20_000, "vs_json": 1.0, "rounds": [20_000],
             "server_cpu_us_per_log": 12.0},
            {**arm, "arm": "loki protobuf+snappy b1000-c8", "logs_per_s": 12_000, "vs_json": 0.6,
             "rounds": [12_000], "server_cpu_us_per_log": 19.5},
            {"arm": "es bulk b1000-gzip-c8", "skipped": "route missing"},
        ]},
    }  # fmt: skip
    table = report.agents_table(data)
    assert "| `json b1000-gzip-c8` | 20,000 | 1.00 × | — |" in table[2]
    assert "0.60 × | **no** |" in table[3] and "19.5" in table[3]
    assert table[4].startswith("| `es bulk b1000-gzip-c8` | skipped: route missing |")


def test_the_three_arms_store_the_same_logs_through_the_real_routes(client: TestClient, db: DB) -> None:
    batch = LogFactory(4).batch(30)
    stored = {}
    for name, (path, content_type, gzip_, payloads) in agents.arms([batch]).items():
        headers = {"Content-Type": content_type, **({"Content-Encoding": "gzip"} if gzip_ else {})}
        response = client.post(path, content=payloads[0], headers=headers)
        assert response.status_code in (200, 204), response.text
        stored[name] = [dict(r) for r in db.fetch("SELECT * FROM logs ORDER BY created_at, message")]
        db.fetch("TRUNCATE logs")
    ours, loki_rows, bulk_rows = stored.values()

    def without(rows: list[dict], *columns: str) -> list[dict]:
        return [{k: v for k, v in row.items() if k not in ("id", *columns)} for row in rows]

    # What only the Loki query API reads (the labels, structured metadata and line pushed) aside.
    loki_only = ("loki_labels", "loki_metadata", "loki_line")
    assert len(ours) == 30 and without(loki_rows, *loki_only) == without(ours, *loki_only)
    assert all(row["loki_labels"] for row in loki_rows) and not any(row["loki_labels"] for row in ours)
    # ECS has no field for our log_type, action_type or duration in ms: the bulk mapping keeps those in metadata.
    assert without(bulk_rows, "log_type", "action_type", "duration_ms", "metadata") == without(
        ours, "log_type", "action_type", "duration_ms", "metadata"
    )
