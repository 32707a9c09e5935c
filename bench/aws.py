"""`python -m bench aws`: the two AWS front doors beside POST /logs, with the same generated logs.

* handler: a fresh interpreter imports `handler` (as a Lambda container does) and calls `handler.handler`
  with 1,000-event CloudWatch Logs subscription events (the lines as JSON objects, and as the Python
  runtime's `[LEVEL]\\t<time>\\t<request id>\\t<message>` text) and with API Gateway HTTP API events posting
  the same 1,000 logs to /logs, in turns; every event is new (fresh event ids, no idempotency replay);
  medians per event.
* firehose: the real server (`python -m app`, one worker); requests of 500 Firehose records (one JSON log
  per record, and gzip'd CloudWatch Logs payloads of 2 events per record), each request with a requestId of
  its own, beside POST /logs of the same logs in batches of the same count; 8 clients, each request sent
  once, gzip. After each arm the table holds exactly the logs acknowledged.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import db, http
from bench.data import LogFactory, body, gzipped
from bench.http import ROOT

EVENTS = 1000
RECORDS = 500
CLOUDWATCH_EVENTS_PER_RECORD = 2
CLIENTS = 8
HANDLER_RUNS = 15
REQUESTS_PER_ARM = 96

_HANDLER = """
import json, statistics, sys, time
import handler
events = json.load(open(sys.argv[1]))
times = {name: [] for name in events}
for round_ in range(len(next(iter(events.values())))):
    for name, series in events.items():
        started = time.perf_counter()
        answer = handler.handler(series[round_], None)
        times[name].append((time.perf_counter() - started) * 1000)
        saved = answer["saved"] if "saved" in answer else json.loads(answer["body"])["saved"]
        assert saved == 1000, answer
print(json.dumps({name: statistics.median(t[1:]) for name, t in times.items()}))
"""


def _cloudwatch_event(
    messages: list[str], group: str = "/aws/lambda/checkout", level: int = 9
) -> dict[str, Any]:
    start = int(time.time() * 1000)
    run = uuid.uuid4().hex
    payload = {
        "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": group,
        "logStream": f"2026/11/30/[$LATEST]{run}", "subscriptionFilters": ["log-save-server"],
        "logEvents": [{"id": f"{run}{i}", "timestamp": start + i, "message": m} for i, m in enumerate(messages)],
    }  # fmt: skip
    # `level`: gzip's; the profile suite builds hundreds of events ahead with 1, five times as fast.
    packed = gzip.compress(json.dumps(payload).encode(), compresslevel=level)
    return {"awslogs": {"data": base64.b64encode(packed).decode()}}


def _python_line(entry: dict[str, Any]) -> str:
    return f"[{entry['level']}]\t2026-11-30T10:00:00.000Z\tc6af9ac6-7b61-11e6-9a41-93e8deadbeef\t{entry['message']}\n"


def _apigw_event(entries: list[dict[str, Any]]) -> dict[str, Any]:
    event = json.loads((ROOT / "tests" / "events" / "apigw-http-v2.json").read_text())
    event["body"], event["isBase64Encoded"] = body(entries).decode(), False
    return event


def handler_events(factory: LogFactory, runs: int) -> dict[str, list[dict[str, Any]]]:
    batches = [factory.batch(EVENTS) for _ in range(runs)]
    return {
        "subscription, JSON lines": [_cloudwatch_event([json.dumps(e) for e in b]) for b in batches],
        "subscription, Python runtime lines": [
            _cloudwatch_event([_python_line(e) for e in b]) for b in batches
        ],
        "API Gateway POST /logs": [_apigw_event(b) for b in batches],
    }


def run_handler(dsn: str, runs: int) -> dict[str, float]:
    events = handler_events(LogFactory(5), runs)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LOGSAVE_", "DB_"))}
    env.update(DATABASE_URL=dsn, PYTHONPATH=str(ROOT), LOG_LEVEL="WARNING")
    with tempfile.TemporaryDirectory() as cwd:  # no stray .env
        path = Path(cwd) / "events.json"
        path.write_text(json.dumps(events))
        done = subprocess.run([sys.executable, "-c", _HANDLER, str(path)], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    return {name: round(ms, 2) for name, ms in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def _record(raw: bytes) -> dict[str, str]:
    return {"data": base64.b64encode(raw).decode()}


def firehose_body(entries: list[dict[str, Any]], cloudwatch: bool) -> bytes:
    if cloudwatch:
        size = CLOUDWATCH_EVENTS_PER_RECORD
        records = [
            _record(base64.b64decode(_cloudwatch_event([json.dumps(e) for e in entries[i : i + size]])["awslogs"]["data"]))
            for i in range(0, len(entries), size)
        ]  # fmt: skip
    else:
        records = [_record(json.dumps(e).encode()) for e in entries]
    request_id = str(uuid.uuid4())
    return json.dumps(
        {"requestId": request_id, "timestamp": int(time.time() * 1000), "records": records}
    ).encode()


def _request(port: int, path: str, payload: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Encoding: gzip\r\nContent-Length: {len(payload)}\r\n\r\n")  # fmt: skip
    return head.encode() + payload


async def send_all(port: int, requests: list[bytes], counts: list[int], clients: int) -> dict[str, Any]:
    """Every request sent once, by `clients` connections taking the next one in turn."""
    pending: Iterator[int] = iter(range(len(requests)))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    acknowledged = 0

    async def client() -> None:
        nonlocal acknowledged
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for index in pending:
                started = time.perf_counter()
                writer.write(requests[index])
                status, _, _ = await http._read_response(reader)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    acknowledged += counts[index]
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.perf_counter() - started
    ms = [latency * 1000 for latency in latencies]
    return {
        "logs_per_s": round(acknowledged / seconds, 1), "acknowledged": acknowledged,
        "p50_ms": round(db.percentile(ms, 50), 3), "p99_ms": round(db.percentile(ms, 99), 3),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }  # fmt: skip


def run_firehose(dsn: str, requests_per_arm: int, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    factory = LogFactory(9)
    batches = [factory.batch(RECORDS) for _ in range(requests_per_arm)]
    cloudwatch = [factory.batch(RECORDS * CLOUDWATCH_EVENTS_PER_RECORD) for _ in range(requests_per_arm)]
    arms = {
        f"POST /logs, {RECORDS} logs": ("/logs", [body(b) for b in batches], RECORDS),
        f"POST /firehose, {RECORDS} JSON records": ("/firehose", [firehose_body(b, False) for b in batches], RECORDS),
        f"POST /logs, {RECORDS * CLOUDWATCH_EVENTS_PER_RECORD} logs": ("/logs", [body(b) for b in cloudwatch],
                                                                       RECORDS * CLOUDWATCH_EVENTS_PER_RECORD),
        f"POST /firehose, {RECORDS} CloudWatch records × {CLOUDWATCH_EVENTS_PER_RECORD} events": (
            "/firehose", [firehose_body(b, True) for b in cloudwatch], RECORDS * CLOUDWATCH_EVENTS_PER_RECORD),
    }  # fmt: skip
    results = []
    with http.server(dsn, "group", 1) as (process, port):
        for name, (path, bodies, count) in arms.items():
            progress(f"aws {name}")
            asyncio.run(http._count(dsn, truncate=True))
            payloads = [gzipped(b) for b in bodies]
            requests = [_request(port, path, p) for p in payloads]
            with http.Sampler(process) as sampler:
                measured = asyncio.run(send_all(port, requests, [count] * len(requests), CLIENTS))
            stored = asyncio.run(http._count(dsn))
            if stored != measured["acknowledged"]:
                raise db.RowCountMismatch(
                    f"{name}: {measured['acknowledged']} acknowledged but {stored} stored"
                )
            results.append({
                "arm": name, **measured, "requests": len(requests),
                "wire_bytes_per_request": round(statistics.mean(len(p) for p in payloads)),
                "server_cpu": sampler.server_cpu, "postgres_cpu": sampler.postgres_cpu,
            })  # fmt: skip
    asyncio.run(http._count(dsn, truncate=True))
    return results


def run(dsn: str, progress: Callable[[str], None], quick: bool = False) -> dict[str, Any]:
    progress("aws handler: subscription events beside API Gateway events")
    handler = run_handler(dsn, 4 if quick else HANDLER_RUNS)
    asyncio.run(http._count(dsn, truncate=True))
    firehose = run_firehose(dsn, 16 if quick else REQUESTS_PER_ARM, progress)
    return {"handler_ms_per_event": handler, "firehose": firehose}
