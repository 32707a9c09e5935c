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

Every arm is timed alike: a warm-up, then logs committed within the measured window (JSON and RELP: those
acknowledged; TCP, which has no acknowledgement: the server's committed counter read at both ends of the
window while the clients keep writing). Then the clients stop and what the socket buffers still held is
waited for, untimed; after each arm the table holds exactly the logs sent (TCP) or acknowledged (the
others). Server and PostgreSQL CPU per log are their CPU seconds over the window divided by its logs; the
bench's own CPU (its clients) is reported in cores, as it competes for the same 2 cores.
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
# Seconds measured per arm. The logs committed within the window are counted, and a TCP arm commits in
# steps of up to 16 batches of 1000 (8 connections x the 2 batches each writes at once, app/syslog/tcp.py):
# about 2 s apart on the loaded 2-core machine, so 5 s windows measured 1,642 to 11,641 logs/s for one arm.
DURATION = 10.0
TARGET = 0.7
WINDOW = 128
_SEVERITY = {"TRACE": 7, "DEBUG": 7, "INFO": 6, "WARN": 4, "ERROR": 3, "FATAL": 2}
_COSTS = ("server_cpu_us_per_log", "postgres_cpu_us_per_log", "server_cpu", "postgres_cpu", "client_cpu")
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


def _costs(sampler: http.Sampler, logs: int, seconds: float) -> dict[str, Any]:
    """logs/s and where the CPU went: the server's and PostgreSQL's per log, and in cores the server's,
    PostgreSQL's and the bench's own (its clients: on 2 cores a busy client takes CPU from the others)."""
    return {
        "logs_per_s": round(logs / seconds, 1),
        "server_cpu": sampler.server_cpu,
        "postgres_cpu": sampler.postgres_cpu,
        "client_cpu": sampler.client_cpu,
        "server_cpu_us_per_log": round(sampler.server_seconds / max(1, logs) * 1e6, 2),
        "postgres_cpu_us_per_log": round(sampler.postgres_seconds / max(1, logs) * 1e6, 2),
    }


def _json(dsn: str, process: Any, postmaster: int | None, port: int, name: str, requests: list[bytes],
          warmup: float, duration: float) -> dict[str, Any]:  # fmt: skip
    """Our JSON: logs acknowledged (committed) over the measured time after the warm-up; CPU per log over
    both (the sampler runs through the warm-up too)."""
    asyncio.run(http._count(dsn, truncate=True))
    with http.Sampler(process, postmaster) as sampler:
        warm, measured, seconds = uvloop.run(
            http.load(port, requests, CLIENTS, warmup, duration, counts=[BATCH] * len(requests))
        )
    acknowledged = warm.acknowledged + measured.acknowledged
    stored = asyncio.run(http._count(dsn))
    if stored != acknowledged:
        raise db.RowCountMismatch(f"{name}: {acknowledged} acknowledged but {stored} stored")
    return {**_costs(sampler, acknowledged, 1.0), "logs_per_s": round(measured.acknowledged / seconds, 1)}


async def _committed(client: httpx.AsyncClient) -> float:
    """Syslog messages the server has committed (its counter, incremented after each commit: polling
    count(*) would load PostgreSQL)."""
    text = (await client.get("/metrics")).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("logsave_syslog_stored_total")
    )


def _stream(
    dsn: str,
    process: Any,
    postmaster: int | None,
    port: int,
    name: str,
    clients: Callable[[float], Any],
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    """One syslog arm once, measured as JSON's is: the clients send from the start to the end of the
    measured window, and logs/s is the messages the server committed within that window (read from its
    counter at both ends), after a warm-up. Then the clients stop, and whatever the socket buffers still
    held is waited for, untimed: every message sent (TCP) or acknowledged (RELP) must be stored."""
    asyncio.run(http._count(dsn, truncate=True))

    async def load() -> tuple[int, float, float, http.Sampler]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            before = await _committed(client)
            started = time.perf_counter()
            sending = asyncio.ensure_future(clients(started + warmup + duration))
            await asyncio.sleep(warmup)
            sampler = http.Sampler(process, postmaster).__enter__()
            opened, first = time.perf_counter(), await _committed(client)
            await asyncio.sleep(max(0.0, started + warmup + duration - time.perf_counter()))
            last = await _committed(client)
            seconds = time.perf_counter() - opened
            sampler.__exit__(None, None, None)
            sent = sum(await sending)
            deadline = time.monotonic() + 300
            while await _committed(client) - before < sent and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return sent, last - first, seconds, sampler

    sent, committed, seconds, sampler = uvloop.run(load())
    stored = asyncio.run(http._count(dsn))
    if stored != sent:
        raise db.RowCountMismatch(f"{name}: {sent} sent/acknowledged but {stored} stored")
    return {**_costs(sampler, int(committed), seconds), "sent": sent}


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
        postmaster = asyncio.run(http.postmaster(dsn))
        requests = agents._requests(port, json_requests_bodies, "/logs", "application/json", True)
        for number in range(rounds):
            for name in names:
                progress(f"syslog {name} ({number + 1}/{rounds})")
                if name.startswith("json"):
                    runs[name].append(_json(dsn, process, postmaster, port, name, requests, warmup, duration))
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

                    runs[name].append(
                        _stream(dsn, process, postmaster, port, name, clients, warmup, duration)
                    )
                else:

                    def clients(deadline: float) -> Any:
                        return asyncio.gather(
                            *(_relp_client(ports["relp"], relp_lines, deadline) for _ in range(CLIENTS))
                        )

                    runs[name].append(
                        _stream(dsn, process, postmaster, port, name, clients, warmup, duration)
                    )
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
            **{key: _median([r[key] for r in measured]) for key in _COSTS},
        })  # fmt: skip
    return {"arms": results, "target": TARGET}


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)
