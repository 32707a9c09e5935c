"""bench/cpu.py: CPU seconds of a process tree and of a PostgreSQL cluster, from /proc."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import psutil

from bench import cpu, http
from bench.cpu import TICK


def _stat(proc: Path, pid: int, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0,
          name: str = "postgres") -> None:  # fmt: skip
    (proc / str(pid)).mkdir(parents=True)
    # Fields 3.. after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime ...
    rest = f"S {ppid} 1 1 0 -1 0 0 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 1 0"
    (proc / str(pid) / "stat").write_text(f"{pid} ({name}) {rest}\n")


def test_a_tree_is_its_processes_plus_the_roots_reaped_children(tmp_path: Path) -> None:
    _stat(tmp_path, 10, 1, 100, 50, cutime=400, cstime=100)  # the postmaster, having reaped 5 s
    _stat(tmp_path, 11, 10, 200, 100, cutime=7000, cstime=0)  # a backend: its cutime is not counted
    _stat(tmp_path, 12, 10, 30, 20, name="a) weird (name")  # parentheses in the name
    _stat(tmp_path, 13, 12, 1, 1)  # a grandchild
    _stat(tmp_path, 20, 1, 9999, 9999)  # another cluster
    (tmp_path / "self").mkdir()  # not a pid: skipped
    assert sorted(cpu.descendants(10, tmp_path)) == [11, 12, 13]
    assert cpu.stat_times(12, tmp_path) == (50 / TICK, 0.0)
    expected = (150 + 500 + 300 + 50 + 2) / TICK
    assert abs(cpu.tree_seconds(10, tmp_path) - expected) < 1e-9
    assert cpu.stat_times(99, tmp_path) is None
    assert cpu.parent(11, tmp_path) == 10
    (tmp_path / "10" / "cmdline").write_bytes(b"/usr/lib/postgresql/17/bin/postgres\0-D\0/data\0")
    assert cpu.postmaster_of(11, tmp_path) == 10
    assert cpu.postmaster_of(99, tmp_path) is None  # not on this machine


def test_a_child_that_exits_still_counts_once_reaped() -> None:
    # A real child burning CPU, then reaped: its seconds move into this process's cutime, not lost.
    me = os.getpid()
    before = cpu.tree_seconds(me)
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    assert cpu.tree_seconds(me) - before >= 0.25
    assert cpu.stat_times(me)[1] >= 0.25


def test_the_postmaster_is_found_and_its_backends_counted(database_url: str) -> None:
    # Several times: the backend asked exits as its connection closes, and must have been read before.
    pids = {asyncio.run(http.postmaster(database_url)) for _ in range(5)}
    assert len(pids) == 1 and None not in pids
    (pid,) = pids
    assert "postgres" in " ".join(psutil.Process(pid).cmdline())
    before = cpu.tree_seconds(pid)

    async def work() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            # Bounded in count; CPU in a backend that then exits (reaped by the postmaster).
            await conn.execute("SELECT count(*) FROM generate_series(1, 3000000)")
        finally:
            await conn.close()

    asyncio.run(work())
    # The backend's seconds are in the cluster's total whether it is still alive or already reaped.
    assert cpu.tree_seconds(pid) - before > 0.05
