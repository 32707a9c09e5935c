"""`python -m bench profile`: where the server's CPU goes under load, sampled by py-spy.

One worker serves each arm while py-spy samples it (`py-spy record --format raw`, idle time left out).
Every sample is charged to the deepest frame that belongs to a known layer (see LAYERS): time in a C
function is charged to the Python frame that called it, so msgspec's decoding counts as the parse and
zlib's as inflate. With the worker's CPU seconds and the logs acknowledged over the same interval, each
layer's share becomes µs of server CPU per log and per request, beside PostgreSQL's CPU per log (its
postmaster's tree, bench/cpu.py) over the same interval.

The arms: POST /logs at batch 1000 gzip from 8 clients and at batch 10 from 32 (ARMS), then every other
front door at batch 1000 from 8 clients (DOORS), with the bodies the agents, otlp and aws suites send:
Elasticsearch bulk (NDJSON of ECS documents, gzip; no `_id`, as Filebeat and Fluent Bit send them, so
no document id is claimed), Loki push (protobuf, snappy; a key per request, as its agents' batches all
differ), OTLP/HTTP protobuf (gzip), and Firehose with JSON records and with CloudWatch Logs records of 2
events (gzip; a request id per send, as Firehose stamps each request).
Last, the CloudWatch Logs subscription, which has no HTTP server: `handler.handler` in a Lambda-like
child process (HANDLER) with events of 1000 JSON lines, sampled the same way, its CPU per log read from
that child. After each arm the table holds exactly the logs acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
import uvloop

from app.formats import firehose, loki
from bench import agents, aws, db, http, lone, otlp
from bench.data import LogFactory, gzipped

ARMS = [
    http.Arm("b1000-gzip-c8", "group", 1000, True, 8),
    http.Arm("b10-c32", "group", 10, False, 32),
]


def _firehose(cloudwatch: bool) -> Callable[[list[dict[str, Any]]], bytes]:
    """bench/aws.py's Firehose body without its requestId: the load puts a new one in each send's
    X-Amz-Firehose-Request-Id instead (the body's would win, and a repeated one is a replay)."""

    def payload(entries: list[dict[str, Any]]) -> bytes:
        document = orjson.loads(aws.firehose_body(entries, cloudwatch))
        del document["requestId"]
        return orjson.dumps(document)

    return payload


@dataclass(frozen=True)
class Door:
    """A front door beside POST /logs: its route, and how a batch of logs becomes one of its bodies."""

    name: str
    path: str
    content_type: str
    gzip: bool
    payload: Callable[[list[dict[str, Any]]], bytes]
    check: Callable[[bytes], bool] | None = None  # whether an answer acknowledges the whole batch
    key_header: bytes | None = None  # every send carries a key never used before, in this header


DOOR_BATCH = 1000
DOOR_CLIENTS = 8
DOORS = [
    Door("bulk ndjson b1000-gzip-c8", agents.BULK_PATH, "application/x-ndjson", True, agents.es_bulk,
         agents._check_bulk),
    Door("loki protobuf+snappy b1000-c8", agents.LOKI_PATH, loki.PROTOBUF, False, agents.loki_protobuf,
         key_header=b"Idempotency-Key"),
    Door("otlp protobuf b1000-gzip-c8", "/v1/logs", "application/x-protobuf", True, otlp.protobuf),
    Door("firehose json-records b1000-gzip-c8", firehose.PATH, "application/json", True, _firehose(False),
         key_header=firehose.REQUEST_ID.encode()),
    Door("firehose cloudwatch-records b1000-gzip-c8", firehose.PATH, "application/json", True, _firehose(True),
         key_header=firehose.REQUEST_ID.encode()),
]  # fmt: skip
HANDLER = "cloudwatch subscription (handler.handler) b1000"
# One progress step per arm, and the lone batch.
STEPS = len(ARMS) + len(DOORS) + 2
RATE = 250  # samples per second
# (layer, pattern on a frame's "function (file:line)"), tried from the deepest frame up; first match wins.
LAYERS = [
    ("inflate (zlib)", r"app/intake/decode\.py"),
    ("parse, validate, build rows", r"app/(intake/rows|models|numeric|formats/\w+)\.py|msgspec|pydantic"),
    ("COPY: asyncpg's encoding and protocol", r"asyncpg/"),
    # documents: a bulk request's `_id` claims, taken in the COPY's transaction like an idempotency key.
    ("writer: group, transaction, summary, idempotency",
     r"app/(intake/writer|storage/summary|intake/idempotency|intake/documents|storage/partitions)\.py"),
    ("body receive", r"app/intake/body\.py|starlette/requests\.py"),
    ("request log and metrics", r"app/(requestlog|metrics|jsonlog)\.py|prometheus_client|logging/"),
    # subscription: a CloudWatch event's (and Firehose's) path from decoded payloads to the writer, as a route
    # is; handler.py: Lambda's entry point.
    ("our endpoint (routes, intake, auth, errors)",
     r"app/(routes/|intake/intake|intake/subscription|auth|errors|asgi|main)|\bhandler\.py"),
    ("HTTP server (uvicorn, httptools)", r"uvicorn/|httptools|app/protocol\.py"),
    ("framework (FastAPI, Starlette, Mangum)", r"fastapi/|starlette/|mangum/"),
    ("event loop (asyncio, uvloop)", r"asyncio/|uvloop"),
]  # fmt: skip
_LAYERS = [(name, re.compile(pattern)) for name, pattern in LAYERS]
_FRAME = re.compile(r"^(?P<function>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def layer_of(stack: Sequence[str]) -> str:
    for frame in reversed(stack):
        for name, pattern in _LAYERS:
            if pattern.search(frame):
                return name
    return "other"


def _leaf(frame: str) -> str:
    """'function (/…/site-packages/pkg/mod.py:12)' -> 'pkg/mod.py function', paths from their package."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    return f"{_PACKAGE_PATH.sub('', match['file'])} {match['function']}"


# Everything up to a package's own directory: site-packages, the standard library, or this checkout.
_PACKAGE_PATH = re.compile(r"^(.*site-packages/|.*/lib/python3\.\d+/|.*/(?=app/|bench/))")


def summarize(raw: str, top: int = 15) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, samples per layer, samples per leaf function) from py-spy's raw (collapsed) output."""
    layers: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        stack = stack_text.split(";")
        total += count
        layers[layer_of(stack)] += count
        leaves[_leaf(stack[-1])] += count
    return total, layers, Counter(dict(leaves.most_common(top)))


MISSING = "py-spy is not installed (pip install -r requirements-bench.txt)"


def py_spy() -> str | None:
    """py-spy's path: first beside the running Python (a venv's bin/, which scripts and cron use without
    activating it, so it is not on PATH), then on PATH."""
    sibling = Path(sys.executable).parent / "py-spy"
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which("py-spy")


def _record(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    spy = py_spy()
    if spy is None:
        raise RuntimeError(MISSING)
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", str(RATE), "--duration", str(seconds), "--format", "raw",
         "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def run(
    dsn: str, warmup: float, duration: float, progress: Callable[[str], None], lone_runs: int = lone.RUNS
) -> dict[str, Any]:
    seconds = max(1, round(duration))
    factory = LogFactory(13)
    results = []
    with http.server(dsn, "group", 1) as (process, port), tempfile.TemporaryDirectory() as tmp:
        for arm in ARMS:
            progress(f"profile {arm.name}")
            requests = http.build_requests(port, http._bodies(factory, arm.batch), arm.gzip)
            load = Load(port, requests, arm.clients)
            results.append({"arm": arm.name, "path": "/logs", "batch": arm.batch, "gzip": arm.gzip,
                            "clients": arm.clients,
                            **_sampled(dsn, process, load, warmup, seconds, Path(tmp) / f"{arm.name}.txt")})  # fmt: skip
        batches = [factory.batch(DOOR_BATCH) for _ in range(BATCHES)]
        for door in DOORS:
            progress(f"profile {door.name}")
            payloads = [door.payload(batch) for batch in batches]
            requests = agents._requests(port, [_gzipped(p, door.gzip) for p in payloads], door.path,
                                        door.content_type, door.gzip)  # fmt: skip
            load = Load(
                port, requests, DOOR_CLIENTS, [DOOR_BATCH] * len(requests), door.check, door.key_header
            )
            results.append({"arm": door.name, "path": door.path, "batch": DOOR_BATCH, "gzip": door.gzip,
                            "clients": DOOR_CLIENTS,
                            **_sampled(dsn, process, load, warmup, seconds, Path(tmp) / f"{door.name}.txt")})  # fmt: skip
        progress(f"profile {HANDLER}")
        results.append(_handler(dsn, warmup, seconds, Path(tmp) / "handler.txt"))
    asyncio.run(http._count(dsn, truncate=True))
    progress("profile: a lone batch, step by step")
    return {"arms": results, "lone_batch": lone.run(dsn, lone_runs)}


BATCHES = 16  # distinct bodies per front door, sent in turn


def _gzipped(payload: bytes, gzip: bool) -> bytes:
    return gzipped(payload) if gzip else payload


@dataclass(frozen=True)
class Load:
    """What the clients send an arm's server, and how its answers acknowledge logs."""

    port: int
    requests: list[bytes]
    clients: int
    counts: list[int] | None = None  # logs per request, when the answer does not say `saved`
    check: Callable[[bytes], bool] | None = None
    key_header: bytes | None = None

    def run(self, warmup: float, duration: float) -> tuple[http.Tally, http.Tally, float]:
        keyed = self.key_header is not None
        return uvloop.run(http.load(self.port, self.requests, self.clients, warmup, duration, keyed, self.counts,
                                    self.check, self.key_header or b"Idempotency-Key"))  # fmt: skip


def _sampled(
    dsn: str, process: psutil.Process, load: Load, warmup: float, seconds: int, out: Path
) -> dict[str, Any]:
    """One arm: the table emptied, the server warmed up unsampled, then exactly the measured phase sampled,
    and the table checked to hold every log acknowledged."""
    asyncio.run(http._count(dsn, truncate=True))
    warm, _, _ = load.run(warmup, 0.0)
    spy = _record(process.pid, seconds, out)
    with http.Sampler(process, asyncio.run(http.postmaster(dsn))) as sampler:
        _, measured, elapsed = load.run(0.0, seconds)
    _finish(spy, seconds, out)
    _check_stored(dsn, out.stem, warm.acknowledged + measured.acknowledged)
    return _figures(measured.acknowledged, measured.requests, elapsed, sampler, out)


def _finish(spy: subprocess.Popen[bytes], seconds: int, out: Path) -> None:
    _, stderr = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed: {stderr.decode(errors='replace')[-2000:]}")


def _check_stored(dsn: str, arm: str, acknowledged: int) -> None:
    stored = asyncio.run(http._count(dsn))
    if stored != acknowledged:
        raise db.RowCountMismatch(f"{arm}: {acknowledged} logs acknowledged but {stored} stored")


def _figures(logs: int, requests: int, elapsed: float, sampler: http.Sampler, out: Path) -> dict[str, Any]:
    """Throughput, CPU per log and per request, and the samples charged to layers and functions."""
    if not logs:
        raise RuntimeError(f"no log acknowledged while profiling {out.stem}")
    total, layers, leaves = summarize(out.read_text())
    if not total:
        raise RuntimeError(f"py-spy took no sample of {out.stem}")
    per_log = sampler.server_seconds / logs * 1e6
    per_request = sampler.server_seconds / requests * 1e6
    return {
        "logs_per_s": round(logs / elapsed, 1),
        "server_cpu_us_per_log": round(per_log, 2), "server_cpu_us_per_request": round(per_request, 1),
        "postgres_cpu_us_per_log": round(sampler.postgres_seconds / logs * 1e6, 2),
        "samples": total,
        "layers": [{"layer": name, "share": round(n / total, 4), "us_per_log": round(per_log * n / total, 2),
                    "us_per_request": round(per_request * n / total, 1)}
                   for name, n in layers.most_common()],
        "top_functions": [{"function": name, "share": round(n / total, 4)} for name, n in leaves.most_common()],
    }  # fmt: skip


# The Lambda-like child: imports `handler` as a container does, builds fresh subscription events (new ids:
# none is a replay) and handles a few unsampled; then, told to go, handles events for the measured seconds
# and says how many logs were saved; then waits to be told to exit, idle, while py-spy finishes.
_CHILD = """
import json, sys, time
import handler
from bench import aws
from bench.data import LogFactory, gzipped
seconds, count, warm = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
factory = LogFactory(17)
lines = [[json.dumps(e) for e in factory.batch(aws.EVENTS)] for _ in range(8)]
events = [aws._cloudwatch_event(lines[n % len(lines)], level=1) for n in range(warm + count)]
saved = sum(handler.handler(event, None)["saved"] for event in events[:warm])
print(json.dumps({"saved": saved}), flush=True)
sys.stdin.readline()
saved = handled = 0
started = time.perf_counter()
for event in events[warm:]:
    if time.perf_counter() - started >= seconds:
        break
    saved += handler.handler(event, None)["saved"]
    handled += 1
print(json.dumps({"saved": saved, "events": handled, "seconds": time.perf_counter() - started}), flush=True)
sys.stdin.readline()
"""
EVENTS_PER_SECOND = 60  # built ahead for the measured phase: more than a warm handler gets through (~40)


def _handler(dsn: str, warmup: float, seconds: int, out: Path) -> dict[str, Any]:
    """The CloudWatch Logs subscription arm: `handler.handler` in a child process sampled by py-spy, the
    child's CPU (and PostgreSQL's) per log over the measured phase."""
    asyncio.run(http._count(dsn, truncate=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LOGSAVE_", "DB_"))}
    env.update(DATABASE_URL=dsn, PYTHONPATH=str(http.ROOT), LOG_LEVEL="WARNING")
    warm = max(2, round(warmup * 10))
    command = [sys.executable, "-c", _CHILD, str(seconds), str(seconds * EVENTS_PER_SECOND), str(warm)]
    with tempfile.TemporaryDirectory() as cwd, open(Path(cwd) / "stderr", "w+b") as stderr:  # no stray .env
        child = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=stderr)  # fmt: skip
        assert child.stdin is not None and child.stdout is not None
        try:
            ready = _said(child, stderr)
            spy = _record(child.pid, seconds, out)
            with http.Sampler(psutil.Process(child.pid), asyncio.run(http.postmaster(dsn))) as sampler:
                child.stdin.write(b"go\n")
                child.stdin.flush()
                done = _said(child, stderr)
            _finish(spy, seconds, out)
            child.stdin.write(b"exit\n")
            child.stdin.close()
            child.wait(60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    _check_stored(dsn, HANDLER, ready["saved"] + done["saved"])
    return {"arm": HANDLER, "path": "handler.handler", "batch": aws.EVENTS, "gzip": True, "clients": 1,
            **_figures(done["saved"], done["events"], done["seconds"], sampler, out)}  # fmt: skip


def _said(child: subprocess.Popen[bytes], stderr: Any) -> dict[str, Any]:
    """The child's next line of JSON; its stderr in the error when it ends without one."""
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        child.wait(60)
        stderr.seek(0)
        raise RuntimeError(
            f"the handler process ended ({child.returncode}): {stderr.read().decode()[-3000:]}"
        )
    return json.loads(line)
