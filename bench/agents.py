"""The agents suite: what the agents people already run send, beside our JSON, the same logs in batches of
1000 from 8 clients against one server in one run:

* our JSON to POST /logs (gzip), the reference;
* Loki push as Promtail, Alloy and Docker's driver send it: protobuf, snappy block, to POST
  /loki/api/v1/push; one stream per (service, level) with labels service, level, env, and each line the
  rest of the log as a JSON object (the entry's timestamp carries created_at);
* Elasticsearch bulk as Filebeat and Fluent Bit's `es` output send it: NDJSON `{"create":{}}` + an ECS
  document per log, gzip, to POST /_bulk; acknowledged when answered 200 with `"errors": false`. When the
  route is not there (404) the arm says "skipped: route missing" instead of failing the suite.

After each arm the table holds exactly the logs acknowledged. Target: each agent's format ≥ 0.7 × our JSON's
logs/s.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

import cramjam
import httpx
import orjson
import uvloop

from app.formats import loki
from bench import db, http
from bench.data import LogFactory, body, gzipped

BATCH = 1000
CLIENTS = 8
BATCHES = 16
ROUNDS = 3
TARGET = 0.7
LOKI_PATH = "/loki/api/v1/push"
BULK_PATH = "/_bulk"
_LABELS = ("service", "level", "environment")


def loki_protobuf(entries: list[dict[str, Any]]) -> bytes:
    """One PushRequest, snappy-compressed: a stream per (service, level, environment), entries in order."""
    request = loki.push_request()

    def key(entry: dict[str, Any]) -> tuple[str, ...]:
        return tuple(entry[name] for name in _LABELS)

    for (service, level, environment), group in groupby(sorted(entries, key=key), key=key):
        stream = request.streams.add()
        stream.labels = f'{{service="{service}", level="{level.lower()}", env="{environment}"}}'
        for entry in sorted(group, key=lambda e: e["created_at"]):
            line = {k: v for k, v in entry.items() if k not in _LABELS and k != "created_at"}
            added = stream.entries.add()
            seconds, micros = divmod(round(entry["created_at"] * 1e6), 1_000_000)
            added.timestamp.seconds, added.timestamp.nanos = seconds, micros * 1000
            added.line = orjson.dumps(line).decode()
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def ecs(entry: dict[str, Any]) -> dict[str, Any]:
    """A log as an ECS document, as ecs-logging or Filebeat would write it."""
    document: dict[str, Any] = {
        "@timestamp": datetime.fromtimestamp(entry["created_at"], UTC).isoformat(timespec="microseconds"),
        "log.level": entry["level"].lower(),
        "message": entry["message"],
        "service": {"name": entry["service"], "version": entry["service_version"],
                    "environment": entry["environment"]},
        "trace": {"id": entry["trace_id"]},
        "user": {"id": entry["user_id"]},
        "session": {"id": entry["session_id"]},
        "url": {"path": entry["path"]},
        "http": {"request": {"method": entry["method"]}},
        "event": {"duration": round(entry["duration_ms"] * 1e6)},
        "labels": {"log_type": entry["log_type"]},
    }  # fmt: skip
    if "error_type" in entry:
        document["error"] = {"type": entry["error_type"], "stack_trace": entry["stack_trace"]}
        document["log"] = {
            "origin": {"function": entry["function_name"], "file": {"name": entry["file_path"]}}
        }
    if "action_type" in entry:
        document["labels"]["action_type"] = entry["action_type"]
    for key, value in entry.get("metadata", {}).items():
        # The generator's own `http` (status, user agent, bytes) joins ECS's, beside the request method.
        both = document.get(key)
        document[key] = {**both, **value} if isinstance(both, dict) and isinstance(value, dict) else value
    return document


def es_bulk(entries: list[dict[str, Any]]) -> bytes:
    """NDJSON `{"create":{}}` + ECS document per log, as Filebeat's elasticsearch output sends it."""
    lines = []
    for entry in entries:
        lines += [b'{"create":{}}', orjson.dumps(ecs(entry))]
    return b"\n".join(lines) + b"\n"


def _requests(port: int, payloads: list[bytes], path: str, content_type: str, gzip_: bool) -> list[bytes]:
    out = []
    for payload in payloads:
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
                + ("Content-Encoding: gzip\r\n" if gzip_ else "")
                + f"Content-Length: {len(payload)}\r\n\r\n")  # fmt: skip
        out.append(head.encode() + payload)
    return out


def _bulk_missing(port: int, dsn: str) -> bool:
    """Whether this server has no POST /_bulk (an older branch): one document tried, then cleared away."""
    one = es_bulk(LogFactory(1).batch(1))
    response = httpx.post(
        f"http://127.0.0.1:{port}{BULK_PATH}", content=one, headers={"Content-Type": "application/x-ndjson"}
    )
    asyncio.run(http._count(dsn, truncate=True))
    return response.status_code == 404


def arms(batches: list[list[dict[str, Any]]]) -> dict[str, tuple[str, str, bool, list[bytes]]]:
    """name -> (path, content type, gzip, payloads): the three formats of the same batches."""
    return {
        "json b1000-gzip-c8": ("/logs", "application/json", True, [gzipped(body(b)) for b in batches]),
        "loki protobuf+snappy b1000-c8": (LOKI_PATH, loki.PROTOBUF, False, [loki_protobuf(b) for b in batches]),
        "es bulk b1000-gzip-c8": (BULK_PATH, "application/x-ndjson", True, [gzipped(es_bulk(b)) for b in batches]),
    }  # fmt: skip


def run(
    dsn: str,
    warmup: float,
    duration: float,
    progress: Callable[[str], None],
    rounds: int = ROUNDS,
    workers: int = 1,
) -> dict[str, Any]:
    factory = LogFactory(11)
    batches = [factory.batch(BATCH) for _ in range(BATCHES)]
    formats = arms(batches)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in formats}
    with http.server(dsn, "group", workers) as (process, port):
        bulk_missing = _bulk_missing(port, dsn)
        # The arms take turns, round after round, so that a neighbour's load on a shared machine falls on
        # all of them alike; each figure is then the median over the rounds.
        for number in range(rounds):
            for name, (path, content_type, gzip_, payloads) in formats.items():
                progress(f"agents {name} ({number + 1}/{rounds})")
                if path == BULK_PATH and bulk_missing:
                    continue
                requests = _requests(port, payloads, path, content_type, gzip_)
                checked = _check_bulk if path == BULK_PATH else None
                # A Loki push without a key is keyed by its body (a redelivery is stored once); real agents'
                # batches all differ, so each request here brings a key of its own instead of repeating bytes.
                keyed = path == LOKI_PATH
                runs[name].append(
                    _measure(dsn, process, port, name, requests, warmup, duration, checked, keyed)
                )
    asyncio.run(http._count(dsn, truncate=True))
    reference = runs[next(iter(formats))]
    results: list[dict[str, Any]] = []
    for name, (_, _, _, payloads) in formats.items():
        if not runs[name]:
            results.append({"arm": name, "skipped": "route missing"})
            continue
        measured = runs[name]
        results.append({
            "arm": name, "logs_per_s": _median([r["logs_per_s"] for r in measured]),
            "vs_json": round(_median([r["logs_per_s"] / j["logs_per_s"] for r, j in zip(measured, reference, strict=True)]), 3),
            "rounds": [r["logs_per_s"] for r in measured],
            "p50_ms": _median([r["p50_ms"] for r in measured]), "p99_ms": _median([r["p99_ms"] for r in measured]),
            "wire_bytes_per_request": round(sum(len(p) for p in payloads) / len(payloads)),
            "server_cpu_us_per_log": round(_median([r["server_cpu"] / r["logs_per_s"] * 1e6 for r in measured]), 2),
            "statuses": {k: sum(r["statuses"].get(k, 0) for r in measured) for k in sorted({k for r in measured for k in r["statuses"]})},
        })  # fmt: skip
    return {"arms": results}


def _measure(
    dsn: str,
    process: Any,
    port: int,
    name: str,
    requests: list[bytes],
    warmup: float,
    duration: float,
    check: Callable[[bytes], bool] | None,
    keyed: bool = False,
) -> dict[str, Any]:
    """One arm once: the table emptied, the load, and the logs stored checked against those acknowledged."""
    asyncio.run(http._count(dsn, truncate=True))
    with http.Sampler(process) as sampler:
        warm, measured, seconds = uvloop.run(
            http.load(
                port, requests, CLIENTS, warmup, duration, keyed, counts=[BATCH] * len(requests), check=check
            )
        )
    stored = asyncio.run(http._count(dsn))
    acknowledged = warm.acknowledged + measured.acknowledged
    if stored != acknowledged:
        raise db.RowCountMismatch(f"{name}: {acknowledged} acknowledged but {stored} stored")
    ms = [latency * 1000 for latency in measured.latencies]
    return {
        "logs_per_s": round(measured.acknowledged / seconds, 1),
        "p50_ms": round(db.percentile(ms, 50), 3),
        "p99_ms": round(db.percentile(ms, 99), 3),
        "server_cpu": sampler.server_cpu,
        "statuses": {str(k): v for k, v in measured.statuses.items()},
    }


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def _check_bulk(payload: bytes) -> bool:
    # A bulk answer is 200 even when items failed: only `"errors": false` acknowledges the whole batch.
    return json.loads(payload).get("errors") is False
