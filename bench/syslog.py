"""The syslog suite: the same logs (16 batches of 1000, from 8 clients, one server worker) sent four ways
against one server in one run, the arms taking turns round after round:

* our JSON to POST /logs (gzip), the reference (bench/agents.py's arm);
* TCP octet-counted RFC 5424 (rsyslog's `omfwd` with `TCP_Framing="octet-counted"`), each log as APP-NAME
  (service), severity (level), TIMESTAMP (created_at), hostname, MSG (message) and the other fields as
  structured data `[log@32473 trace_id="…" …]`: what a syslog sender has to say, stored as metadata;
* the same over TCP with a JSON MSG (`@cee:`-less JSON object of the other fields): read like a /logs entry,
  so every field lands in its column as with our JSON;
* RELP (rsyslog's `omrelp`): the structured-data lines as `syslog` commands, each client keeping up to 128
  unacknowledged (librelp's window); counted when acknowledged, i.e. committed.

TCP has no acknowledgement: each client writes for the measured time (the server's backpressure slows it),
then the arm waits until every message sent is stored; logs/s is messages sent over the time from the first
write to the last commit. After each arm the table holds exactly the logs sent (TCP) or acknowledged (the
others). Server CPU per log is the server's CPU seconds over the arm divided by the logs it stored.
Target (issue 31): TCP octet-counted syslog >= 0.7 x our JSON's logs/s.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import uvloop

from bench import agents, db, http
from bench.data import LogFactory, body, gzipped

BATCH = 1000
CLIENTS = 8
BATCHES = 16
ROUNDS = 3
TARGET = 0.7
WINDOW = 128
_SEVERITY = {"TRACE": 7, "DEBUG": 7, "INFO": 6, "WARN": 4, "ERROR": 3, "FATAL": 2}
_HEADER_FIELDS = ("level", "service", "message", "created_at", "metadata")


def _header(entry: dict[str, Any]) -> bytes:
    stamp = datetime.fromtimestamp(entry["created_at"], UTC).isoformat(timespec="microseconds")
    return b"<%d>1 %s web-1 %s - -" % (
        16 * 8 + _SEVERITY[entry["level"]],
        stamp.encode(),
        entry["service"].encode(),
    )


def _sd_value(value: Any) -> bytes:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]").encode()


def sd_line(entry: dict[str, Any]) -> bytes:
    """The log as RFC 5424 with its other fields as structured data."""
    params = b" ".join(
        b'%s="%s"' % (name.encode(), _sd_value(value))
        for name, value in entry.items()
        if name not in _HEADER_FIELDS
    )
    for name, value in entry.get("metadata", {}).items():
        params += b' %s="%s"' % (name.encode(), _sd_value(value))
    return b"%s [log@32473 %s] %s" % (_header(entry), params, entry["message"].encode())


def json_line(entry: dict[str, Any]) -> bytes:
    """The log as RFC 5424 with a JSON MSG holding every field the header does not."""
    rest = {name: value for name, value in entry.items() if name not in ("level", "service", "created_at")}
    return b"%s - %s" % (_header(entry), orjson.dumps(rest))


def octet_counted(lines: list[bytes]) -> bytes:
    return b"".join(b"%d %s" % (len(line), line) for line in lines)


async def _tcp_client(port: int, blob: bytes, count: int, deadline: float) -> int:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    while time.perf_counter() < deadline:
        writer.write(blob)
        await writer.drain()
        sent += count
    writer.close()
    await writer.wait_closed()
    return sent


async def _relp_client(port: int, lines: list[bytes], deadline: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    offers = b"relp_version=0\nrelp_software=bench\ncommands=syslog"
    writer.write(b"1 open %d %s\n" % (len(offers), offers))
    await reader.readuntil(b"commands=syslog\n")
    txnr, acknowledged, position = 1, 0, 0
    while time.perf_counter() < deadline:
        frames = []
        for _ in range(WINDOW):
            txnr += 1
            line = lines[position % len(lines)]
            position += 1
            frames.append(b"%d syslog %d %s\n" % (txnr, len(line), line))
        writer.write(b"".join(frames))
        for _ in range(WINDOW):
            answer = await reader.readline()
            if not answer.endswith(b" rsp 6 200 OK\n"):
                raise RuntimeError(f"RELP answered {answer!r}")
        acknowledged += WINDOW
    writer.write(b"%d close 0\n" % (txnr + 1))
    await reader.readline()
    writer.close()
    return acknowledged


def _committed(port: int) -> float:
    """Syslog messages the server has committed (its counter: polling count(*) would load PostgreSQL)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("logsave_syslog_stored_total")
    )


async def _wait_stored(port: int, count: int, before: float, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while _committed(port) - before < count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def _stream(
    dsn: str, process: Any, port: int, name: str, clients: Callable[[float], Any], tcp: bool, duration: float
) -> dict[str, Any]:
    asyncio.run(http._count(dsn, truncate=True))
    before = _committed(port)
    with http.Sampler(process) as sampler:
        started = time.perf_counter()

        async def load() -> int:
            sent = sum(await clients(started + duration))
            if tcp:
                await _wait_stored(port, sent, before)
            return sent

        sent = uvloop.run(load())
        seconds = time.perf_counter() - started
    stored = asyncio.run(http._count(dsn))
    if stored != sent:
        raise db.RowCountMismatch(f"{name}: {sent} sent/acknowledged but {stored} stored")
    return {
        "logs_per_s": round(sent / seconds, 1),
        "server_cpu": sampler.server_cpu,
        "server_cpu_us_per_log": round(sampler.server_seconds / max(1, sent) * 1e6, 2),
        "logs": sent,
    }


def run(
    dsn: str, warmup: float, duration: float, progress: Callable[[str], None], rounds: int = ROUNDS
) -> dict[str, Any]:
    factory = LogFactory(31)
    batches = [factory.batch(BATCH) for _ in range(BATCHES)]
    json_requests_bodies = [gzipped(body(b)) for b in batches]
    sd = [octet_counted([sd_line(e) for e in b]) for b in batches]
    js = [octet_counted([json_line(e) for e in b]) for b in batches]
    relp_lines = [sd_line(e) + b"\n" for e in batches[0]]
    ports = {name: http._free_port() for name in ("tcp", "relp")}
    env = {
        "SYSLOG_HOST": "127.0.0.1",
        "SYSLOG_TCP_PORT": str(ports["tcp"]),
        "SYSLOG_RELP_PORT": str(ports["relp"]),
    }
    names = ("json b1000-gzip-c8", "tcp octet-counted rfc5424+sd c8", "tcp octet-counted rfc5424+json c8",
             "relp rfc5424+sd window128 c8")  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with http.server(dsn, "group", 1, extra_env=env) as (process, port):
        requests = agents._requests(port, json_requests_bodies, "/logs", "application/json", True)
        for number in range(rounds):
            for name in names:
                progress(f"syslog {name} ({number + 1}/{rounds})")
                if name.startswith("json"):
                    measured = agents._measure(dsn, process, port, name, requests, warmup, duration, None)
                    measured["server_cpu_us_per_log"] = round(
                        measured["server_cpu"] / measured["logs_per_s"] * 1e6, 2
                    )
                    runs[name].append(measured)
                    continue
                if name.startswith("tcp"):
                    blobs = sd if "+sd" in name else js

                    def clients(deadline: float, blobs: list[bytes] = blobs) -> Any:
                        return asyncio.gather(
                            *(
                                _tcp_client(ports["tcp"], blobs[n % BATCHES], BATCH, deadline)
                                for n in range(CLIENTS)
                            )
                        )

                    runs[name].append(_stream(dsn, process, port, name, clients, True, duration))
                else:

                    def clients(deadline: float) -> Any:
                        return asyncio.gather(
                            *(_relp_client(ports["relp"], relp_lines, deadline) for _ in range(CLIENTS))
                        )

                    runs[name].append(_stream(dsn, process, port, name, clients, False, duration))
    asyncio.run(http._count(dsn, truncate=True))
    reference = runs[names[0]]
    results = []
    for name in names:
        measured = runs[name]
        results.append({
            "arm": name,
            "logs_per_s": _median([r["logs_per_s"] for r in measured]),
            "vs_json": _median([r["logs_per_s"] / j["logs_per_s"] for r, j in zip(measured, reference, strict=True)]),
            "rounds": [r["logs_per_s"] for r in measured],
            "server_cpu_us_per_log": _median([r["server_cpu_us_per_log"] for r in measured]),
        })  # fmt: skip
    return {"arms": results, "target": TARGET}


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)
