"""When `python -m app`'s main process is killed (-9), its workers drain and exit, and so does the embedded
PostgreSQL it started (app/lifeline.py)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from app import lifeline, metrics
from tests.serverproc import ROOT, Load, start_server, stored_per_marker
from tests.support import DB


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _still_alive_after(pids: set[int], seconds: float) -> set[int]:
    """The pids still alive after up to `seconds`: a bound on the wait, not a timing assertion."""
    deadline = time.monotonic() + seconds
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {pid for pid in pids if _alive(pid)}


def _kill(pids: set[int]) -> None:
    """What a failed test leaves behind."""
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _kill_9_under_load(process: subprocess.Popen[bytes], url: str, clients: int) -> tuple[Load, set[int]]:
    """Send batches of 100 until some are acknowledged, then kill -9 the main process; returns the load
    and the pids of the main process's descendants just before."""
    with Load(url, clients=clients, batch_size=100, max_batches=10_000, max_seconds=60) as load:
        deadline = time.monotonic() + 30
        while len(load.acknowledged) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = {child.pid for child in psutil.Process(process.pid).children(recursive=True)}
        process.kill()
        process.wait(10)
    return load, tree


def _binds(port: int) -> bool:
    with socket.socket() as sock:
        # As uvicorn binds: SO_REUSEADDR passes connections in TIME_WAIT, not a listener still there.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _metrics_dir(tmp_path: Path) -> dict[str, str]:
    """The workers' metrics files in tmp_path: the main process's own temporary directory for them is
    removed at exit, which a kill -9 skips."""
    (tmp_path / "metrics").mkdir(exist_ok=True)
    return {metrics.MULTIPROC_DIR: str(tmp_path / "metrics")}


def test_kill_9_of_the_main_process_ends_every_worker_after_it_drains(
    db: DB, database_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "WEB_CONCURRENCY": "2", **_metrics_dir(tmp_path)}
    process, url = start_server(env, tmp_path)
    load, tree = _kill_9_under_load(process, url, clients=6)
    try:
        assert len(tree) >= 3  # two workers and multiprocessing's resource tracker
        assert _still_alive_after(tree, 5) == set(), (tmp_path / "server.log").read_text()[-3000:]
    finally:
        _kill(tree)
    assert _binds(_port(url))
    assert len(load.acknowledged) >= 20
    stored = stored_per_marker(db)
    # Every acknowledged batch is stored exactly once; what was not acknowledged is stored whole or not at all.
    assert {marker: stored.get(marker) for marker in load.acknowledged} == load.acknowledged
    assert all(count == 100 for count in stored.values())
    assert set(load.statuses) <= {200, 503}, sorted(load.statuses)


def test_kill_9_of_the_main_process_stops_the_embedded_postgresql(tmp_path: Path) -> None:
    env = {"LOGSAVE_DATA_DIR": str(tmp_path / "data"), "WEB_CONCURRENCY": "2", **_metrics_dir(tmp_path)}
    process, url = start_server(env, tmp_path)
    pgdata = tmp_path / "data" / "pg"
    postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    postgres = {postmaster.pid} | {child.pid for child in postmaster.children()}
    load, tree = _kill_9_under_load(process, url, clients=4)
    try:
        assert len(tree) >= 4  # the workers, the resource tracker and the embedded server's watchdog
        # Bounded by the watchdog's smart shutdown, which waits for the draining workers' sessions.
        leftover = _still_alive_after(tree | postgres, 60)
        assert leftover == set(), (tmp_path / "server.log").read_text()[-3000:]
    finally:
        _kill(tree | postgres)
    assert not (pgdata / "postmaster.pid").exists(), "the embedded PostgreSQL did not shut down cleanly"
    assert len(load.acknowledged) >= 20
    assert set(load.statuses) <= {200, 503}, sorted(load.statuses)

    # A new server on the same port and data directory finds every acknowledged batch there exactly once.
    process, url = start_server(env, tmp_path, port=_port(url))
    try:
        # postmaster.pid's fourth and fifth lines: the port and the directory of the Unix socket.
        port, socket_dir = (pgdata / "postmaster.pid").read_text().splitlines()[3:5]
        stored = stored_per_marker(DB(f"postgresql://postgres@/logs_db?host={socket_dir}&port={port}"))
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    assert {marker: stored.get(marker) for marker in load.acknowledged} == load.acknowledged
    assert all(count == 100 for count in stored.values())


# The intermediate process: it spawns a child as uvicorn spawns a worker, then dies before or after the
# child calls follow_parent(), without a goodbye.
_PARENT = """
import multiprocessing, os, sys, time
from tests.test_lifeline import _child
child = multiprocessing.get_context("spawn").Process(target=_child, args=sys.argv[1:])
child.start()
armed = os.path.join(sys.argv[1], "armed")
deadline = time.monotonic() + 30
while sys.argv[2] == "after" and not os.path.exists(armed) and time.monotonic() < deadline:
    time.sleep(0.01)
os._exit(0)
"""


def _child(directory: str, parent_dies: str) -> None:
    def terminated(signum: int, frame: object) -> None:
        Path(directory, "terminated").write_text(signal.Signals(signum).name)
        os._exit(0)

    signal.signal(signal.SIGTERM, terminated)
    parent = multiprocessing.parent_process()
    assert parent is not None
    deadline = time.monotonic() + 30
    while parent_dies == "before" and os.getppid() == parent.pid and time.monotonic() < deadline:
        time.sleep(0.01)
    lifeline.follow_parent()
    Path(directory, "armed").touch()
    time.sleep(30)


@pytest.mark.parametrize("parent_dies", ["before", "after"])
def test_a_spawned_child_is_sent_sigterm_when_its_parent_dies(parent_dies: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", _PARENT, str(tmp_path), parent_dies], env=env, check=True, timeout=60
    )
    deadline = time.monotonic() + 30
    while not (tmp_path / "terminated").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "terminated").read_text() == "SIGTERM"
