"""The http suite: the real server (`python -m app`, as a user runs it) under a closed-loop load generator.

The generator is a few raw asyncio connections writing pre-built HTTP/1.1 requests (keep-alive), so that
as little as possible of the machine's 2 cores goes to the client; its own CPU is measured and reported
beside the server's and PostgreSQL's. Every arm ends by checking that the table holds exactly as many rows
as the server acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import asyncpg
import httpx
import psutil
import uvloop

from app.intake.rows import parse
from bench import cpu, db
from bench.data import LogFactory, body, gzipped

ROOT = Path(__file__).parent.parent


@dataclass(frozen=True)
class Arm:
    name: str
    mode: str  # the server's INGEST_MODE
    batch: int
    gzip: bool
    clients: int
    workers: int = 1  # the server's WEB_CONCURRENCY
    keyed: bool = False  # every request carries an Idempotency-Key of its own
    server: str = "uvicorn"  # or "granian": the same app under Granian (Rust HTTP), a candidate only


def full_arms() -> list[Arm]:
    arms = [
        Arm(f"b{b}{'-gzip' if g else ''}-c8", "group", b, g, 8)
        for b in (10, 100, 1000)
        for g in (False, True)
    ]
    return arms + [
        Arm("b1000-c1", "group", 1000, False, 1),
        Arm("b10-c32", "group", 10, False, 32),
        Arm("b10-c32-direct", "direct", 10, False, 32),
        Arm("b1000-gzip-c8-direct", "direct", 1000, True, 8),
        Arm("b1000-gzip-c8-w2", "group", 1000, True, 8, workers=2),
        Arm("b100-gzip-c8-w2", "group", 100, True, 8, workers=2),
        Arm("b10-c32-w2", "group", 10, False, 32, workers=2),
        Arm("b10-c32-direct-w2", "direct", 10, False, 32, workers=2),
        # What exactly-once costs: the same loads as b1000-gzip-c8 and b10-c32, each request keyed.
        Arm("b1000-gzip-c8-keyed", "group", 1000, True, 8, keyed=True),
        Arm("b10-c32-keyed", "group", 10, False, 32, keyed=True),
        # The same app under Granian's HTTP server instead of uvicorn + httptools (issue: throughput round 2).
        Arm("b1000-gzip-c8-granian", "group", 1000, True, 8, server="granian"),
        Arm("b10-c32-granian", "group", 10, False, 32, server="granian"),
    ]


def quick_arms() -> list[Arm]:
    return [Arm("b100-c4", "group", 100, False, 4), Arm("b100-gzip-c4", "group", 100, True, 4),
            Arm("b10-c8-direct", "direct", 10, False, 8), Arm("b100-c4-keyed", "group", 100, False, 4, keyed=True)]  # fmt: skip


# --- the server process -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server(dsn: str, mode: str, workers: int = 1, root: Path = ROOT, http_server: str = "uvicorn",
           extra_env: dict[str, str] | None = None) -> Iterator[tuple[psutil.Process, int]]:  # fmt: skip
    """`python -m app` (uvicorn) or Granian serving the same app factory, from `root` on 127.0.0.1, with a
    working directory of its own (no stray .env)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LOGSAVE_"))}
    env.update(DATABASE_URL=dsn, SERVER_HOST="127.0.0.1", SERVER_PORT=str(port), LOG_LEVEL="WARNING",
               INGEST_MODE=mode, WEB_CONCURRENCY=str(workers), PYTHONPATH=str(root))  # fmt: skip
    env.update(extra_env or {})
    command = [sys.executable, "-m", "app"]
    if http_server == "granian":
        # The factory `python -m app` hands uvicorn, on uvloop, as uvicorn runs it.
        command = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--loop", "uvloop",
                   "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                   "--log-level", "warning", "app.__main__:serve"]  # fmt: skip
    with tempfile.TemporaryDirectory() as cwd, open(Path(cwd) / "server.log", "wb") as log:
        process = subprocess.Popen(command, env=env, cwd=cwd, stderr=log)
        try:
            _wait_until_up(process, port, Path(cwd) / "server.log")
            yield psutil.Process(process.pid), port
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited during start-up:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("server did not become ready within 60 s")


async def postmaster(dsn: str) -> int | None:
    """The pid of the postmaster serving `dsn`, when it runs on this machine (a backend's parent)."""
    conn = await asyncpg.connect(dsn)
    try:
        # Read while the backend is alive: it exits as soon as the connection closes.
        return cpu.postmaster_of(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()


class Sampler:
    """Peak RSS of the server (its worker processes included), sampled every 20 ms on a thread, and CPU
    seconds of the server, PostgreSQL and this process over the same interval (bench/cpu.py). Without
    the postmaster's pid, PostgreSQL's CPU is that of every postgres process alive at the start."""

    def __init__(self, server: psutil.Process, postmaster: int | None = None) -> None:
        self.root = server.pid
        self.postmaster = postmaster
        self.server = [server, *server.children(recursive=True)]
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = 0
            for process in self.server:
                try:
                    rss += process.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            self._stop.wait(0.02)

    @staticmethod
    def _cpu(processes: Sequence[psutil.Process]) -> float:
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    @staticmethod
    def _postgres() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster")]

    @staticmethod
    def _steal() -> float:
        # CPU time the hypervisor gave to other guests (Linux only): a shared VM's hidden competitor.
        return getattr(psutil.cpu_times(), "steal", 0.0)

    def _postgres_seconds(self) -> float:
        if self.postmaster is not None:
            return cpu.tree_seconds(self.postmaster)
        return self._cpu(self.postgres)

    def _read(self) -> tuple[float, ...]:
        return (cpu.tree_seconds(self.root), self._postgres_seconds(), self._cpu([self.me]), self._steal(),
                time.perf_counter())  # fmt: skip

    def __enter__(self) -> Self:
        self.me = psutil.Process()
        self.postgres = [] if self.postmaster is not None else self._postgres()
        self.start = self._read()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        end = self._read()
        seconds = end[4] - self.start[4]
        # CPU seconds over the interval, for per-log figures: (server, PostgreSQL).
        self.server_seconds, self.postgres_seconds = end[0] - self.start[0], end[1] - self.start[1]
        # CPU in cores: 1.0 = one core busy for the whole interval.
        self.server_cpu, self.postgres_cpu, self.client_cpu, self.steal = (
            round((end[i] - self.start[i]) / seconds, 2) for i in range(4)
        )


# --- the load generator -------------------------------------------------------------------------------


@dataclass
class Tally:
    acknowledged: int = 0
    requests: int = 0
    bytes_sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


def build_requests(port: int, bodies: Sequence[bytes], gzip: bool) -> list[bytes]:
    requests = []
    for raw in bodies:
        payload = gzipped(raw) if gzip else raw
        head = (f"POST /logs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n" + ("Content-Encoding: gzip\r\n" if gzip else "") + "\r\n")  # fmt: skip
        requests.append(head.encode() + payload)
    return requests


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    close = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    return status, await reader.readexactly(length), close


async def _client(
    port: int,
    requests: Sequence[bytes],
    offset: int,
    until: float,
    tally: Tally,
    record: bool,
    keys: str | None,
    counts: Sequence[int] | None = None,
    check: Callable[[bytes], bool] | None = None,
    key_header: bytes = b"Idempotency-Key",
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < until:
            index = i % len(requests)
            request = requests[index]
            i += 1
            if keys is not None:
                # A key never used before: each send is a new batch to the server, as without keys.
                request = request.replace(
                    b"\r\n\r\n", b"\r\n%s: %s-%d\r\n\r\n" % (key_header, keys.encode(), i), 1
                )
            started = time.perf_counter()
            writer.write(request)
            status, payload, close = await _read_response(reader)
            elapsed = time.perf_counter() - started
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if status in (200, 204) and (check is None or check(payload)):
                # An answer that does not say how many were saved (OTLP's, Loki's 204, a bulk answer that
                # `check` finds without errors) acknowledges the whole request.
                tally.acknowledged += counts[index] if counts else json.loads(payload)["saved"]
            if record:
                tally.requests += 1
                tally.bytes_sent += len(request)
                tally.latencies.append(elapsed)
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


async def load(
    port: int,
    requests: Sequence[bytes],
    clients: int,
    warmup: float,
    duration: float,
    keyed: bool = False,
    counts: Sequence[int] | None = None,
    check: Callable[[bytes], bool] | None = None,
    key_header: bytes = b"Idempotency-Key",
) -> tuple[Tally, Tally, float]:
    """Warm-up, then the measured phase; every client finishes its in-flight request before returning.
    `keyed`: every send carries a key never used before, in `key_header` (Firehose's request id is in
    X-Amz-Firehose-Request-Id)."""
    run = os.urandom(4).hex()

    def keys(phase: str, n: int) -> str | None:
        return f"{run}-{phase}-{n}" if keyed else None

    extra = (counts, check, key_header)
    warm = Tally()
    await asyncio.gather(
        *(
            _client(port, requests, n * 7, time.perf_counter() + warmup, warm, False, keys("w", n), *extra)
            for n in range(clients)
        )
    )
    measured = Tally()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _client(port, requests, n * 7, started + duration, measured, True, keys("m", n), *extra)
            for n in range(clients)
        )
    )
    return warm, measured, time.perf_counter() - started


# --- the suite ----------------------------------------------------------------------------------------


def _bodies(factory: LogFactory, batch: int) -> list[bytes]:
    # Enough distinct bodies that the server never sees the same bytes twice in a row.
    return [body(factory.batch(batch)) for _ in range(max(8, min(64, 20_000 // batch)))]


async def _count(dsn: str, truncate: bool = False) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        if truncate:
            await conn.execute("TRUNCATE logs, idempotency_keys")
        return await conn.fetchval("SELECT count(*) FROM logs")
    finally:
        await conn.close()


def run_arm(dsn: str, process: psutil.Process, port: int, arm: Arm, bodies: Sequence[bytes], warmup: float,
            duration: float) -> dict[str, Any]:  # fmt: skip
    requests = build_requests(port, bodies, arm.gzip)
    raw_bytes = sum(len(b) for b in bodies)
    wire_bytes = sum(len(gzipped(b)) for b in bodies) if arm.gzip else raw_bytes
    asyncio.run(_count(dsn, truncate=True))
    with Sampler(process, asyncio.run(postmaster(dsn))) as sampler:
        warm, measured, seconds = uvloop.run(load(port, requests, arm.clients, warmup, duration, arm.keyed))
    stored = asyncio.run(_count(dsn))
    acknowledged = warm.acknowledged + measured.acknowledged
    # The sampler spans the warm-up too, so CPU per log is over every log acknowledged in it.
    server_us, postgres_us = (
        s / max(1, acknowledged) * 1e6 for s in (sampler.server_seconds, sampler.postgres_seconds)
    )
    if stored != acknowledged:
        raise db.RowCountMismatch(
            f"{arm.name}: the server acknowledged {acknowledged} logs but {stored} are stored"
        )
    ms = [latency * 1000 for latency in measured.latencies]
    logs = measured.acknowledged
    return {
        "arm": arm.name, "mode": arm.mode, "workers": arm.workers, "server": arm.server, "batch": arm.batch, "gzip": arm.gzip,
        "clients": arm.clients, "keyed": arm.keyed,
        "seconds": round(seconds, 3), "requests": measured.requests, "logs": logs,
        "logs_per_s": round(logs / seconds, 1), "requests_per_s": round(measured.requests / seconds, 1),
        "p50_ms": round(db.percentile(ms, 50), 3), "p90_ms": round(db.percentile(ms, 90), 3),
        "p99_ms": round(db.percentile(ms, 99), 3),
        "wire_bytes_per_s": round(measured.bytes_sent / seconds), "compression_ratio": round(raw_bytes / wire_bytes, 2),
        "statuses": {str(k): warm.statuses.get(k, 0) + measured.statuses.get(k, 0)
                     for k in sorted(warm.statuses.keys() | measured.statuses.keys())},
        "server_peak_rss_mb": round(sampler.peak_rss / 2**20, 1), "server_cpu": sampler.server_cpu,
        "postgres_cpu": sampler.postgres_cpu,
        "server_cpu_us_per_log": round(server_us, 2), "postgres_cpu_us_per_log": round(postgres_us, 2),
        "steal_cpu": sampler.steal, "client_cpu": sampler.client_cpu, "stored_equals_acknowledged": True,
    }  # fmt: skip


async def copy_ceiling(dsn: str, bodies: Sequence[bytes], connections: int, warmup: float, duration: float,
                       name: str) -> dict[str, Any]:  # fmt: skip
    """COPY the same rows straight from this process, batch by batch, on `connections` connections."""
    rows = [row for raw in bodies for row in parse(raw, 10_000)]
    batch = len(rows) // len(bodies)
    conns = [await db.connect(dsn) for _ in range(connections)]
    try:
        await conns[0].execute("TRUNCATE logs")
        timing, written = await db.timed(conns, db.copy, db.cycler(rows, batch), warmup, duration)
        await db.verify_count(conns[0], written)
    finally:
        for conn in conns:
            await conn.close()
    return {**db.summary("copy", batch, timing), "arm": name, "connections": connections}


def suite(dsn: str, arms: Sequence[Arm], warmup: float, duration: float, progress: Callable[[str], None],
          seed: int = 7, server_root: Path = ROOT) -> dict[str, Any]:  # fmt: skip
    factory = LogFactory(seed)
    bodies = {b: _bodies(factory, b) for b in sorted({arm.batch for arm in arms} | {1000})}
    results = []
    for mode, workers, http_server in dict.fromkeys((arm.mode, arm.workers, arm.server) for arm in arms):
        with server(dsn, mode, workers, server_root, http_server) as (process, port):
            for arm in (a for a in arms if (a.mode, a.workers, a.server) == (mode, workers, http_server)):
                progress(f"http {arm.name}")
                results.append(run_arm(dsn, process, port, arm, bodies[arm.batch], warmup, duration))
    progress("raw COPY ceiling")
    ceilings = [
        asyncio.run(copy_ceiling(dsn, bodies[1000], 2, warmup, duration, "raw-copy-b1000-2conn")),
        asyncio.run(copy_ceiling(dsn, bodies[1000], 1, warmup, duration, "raw-copy-b1000-1conn")),
    ]
    asyncio.run(_count(dsn, truncate=True))
    return {"arms": results, "ceilings": ceilings}
