"""CPU seconds of a process tree, and of one PostgreSQL cluster, read from /proc.

The machine the bench runs on is shared, so wall-clock throughput says little; CPU seconds a process was
charged are far less affected by who else is running. Two totals are read around the same load:

- the server: `python -m app` and every process under it (its workers), plus what its reaped children
  were charged (cutime/cstime: a worker that exited during the load still counts);
- PostgreSQL: the postmaster of the cluster the bench writes to (found from a backend's pid, so other
  clusters on the machine are left out), every live child of it (backends, WAL writer, checkpointer…),
  and the postmaster's cutime/cstime, where the time of every backend that exited has gone.

A process whose time moves from "live" to "reaped" between two readings is counted once either way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def stat_times(pid: int, proc: Path = PROC) -> tuple[float, float] | None:
    """(own utime+stime, reaped children's cutime+cstime) of `pid` in seconds; None if it is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses: fields after the
    # last ")" are split; utime is field 14, i.e. the 12th after it.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def children(pid: int, proc: Path = PROC) -> list[int]:
    """The direct children of `pid` (every process's ppid, field 4 of its stat)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int, proc: Path = PROC) -> list[int]:
    """Every process under `pid`, depth first."""
    out: list[int] = []
    stack = children(pid, proc)
    while stack:
        child = stack.pop()
        out.append(child)
        stack.extend(children(child, proc))
    return out


def tree_seconds(root: int, proc: Path = PROC) -> float:
    """CPU seconds charged so far to `root`, every live process under it, and its reaped children."""
    return _total([root, *descendants(root, proc)], root, proc)


def _total(pids: Iterable[int], root: int, proc: Path) -> float:
    total = 0.0
    for pid in pids:
        times = stat_times(pid, proc)
        if times is not None:
            # Reaped children are counted at the root only: neither tree's processes below the root
            # (uvicorn's workers, PostgreSQL's backends) start children of their own.
            total += times[0] + (times[1] if pid == root else 0.0)
    return total


def parent(pid: int, proc: Path = PROC) -> int:
    text = (proc / str(pid) / "stat").read_text()
    return int(text[text.rindex(")") + 2 :].split()[1])


def postmaster_of(backend: int, proc: Path = PROC) -> int | None:
    """The postmaster of a live PostgreSQL `backend`; None when it is not on this machine (or in a
    container of its own), whose CPU is then not ours to read."""
    try:
        pid = parent(backend, proc)
        command = (proc / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return pid if b"postgres" in command else None
