"""A real `python -m app` with its syslog listeners on, and helpers for what it stored."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serverproc import free_port, start_server
from tests.support import DB


@dataclass
class SyslogServer:
    process: subprocess.Popen[bytes]
    url: str
    tcp: int
    udp: int
    relp: int
    env: dict[str, str]
    cwd: Path

    def metric(self, name: str, **labels: str) -> float:
        """A counter's value from GET /metrics (0 when it has not been counted yet)."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        total = 0.0
        for line in text.splitlines():
            if line.startswith((name + "{", name + " ")):
                series, _, value = line.rpartition(" ")
                found = series[len(name) :].strip("{}")
                if all(part in found.split(",") for part in want.split(",") if part):
                    total += float(value)
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)


def start_syslog(database_url: str, cwd: Path, **env: str) -> SyslogServer:
    ports = {"tcp": free_port(), "udp": free_port(), "relp": free_port()}
    settings = {
        "DATABASE_URL": database_url,
        "SYSLOG_HOST": "127.0.0.1",
        "SYSLOG_TCP_PORT": str(ports["tcp"]),
        "SYSLOG_UDP_PORT": str(ports["udp"]),
        "SYSLOG_RELP_PORT": str(ports["relp"]),
        **env,
    }
    cwd.mkdir(parents=True, exist_ok=True)
    process, url = start_server(settings, cwd)
    port = {name: int(settings[f"SYSLOG_{name.upper()}_PORT"]) for name in ports}
    return SyslogServer(process, url, port["tcp"], port["udp"], port["relp"], settings, cwd)


@pytest.fixture
def syslog_server(db: DB, database_url: str, tmp_path: Path) -> Iterator[SyslogServer]:
    server = start_syslog(database_url, tmp_path)
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait(10)


def wait_for_rows(db: DB, count: int, seconds: float = 60) -> int:
    """Poll until `count` rows are stored (bounded); the number stored."""
    deadline = time.monotonic() + seconds
    stored = db.count()
    while stored < count and time.monotonic() < deadline:
        time.sleep(0.1)
        stored = db.count()
    return stored


def stored(db: DB) -> list[dict[str, Any]]:
    rows = db.fetch(
        "SELECT created_at, level::text AS level, service, message, trace_id, metadata FROM logs ORDER BY created_at, id"
    )
    return [{**dict(row), "metadata": json.loads(row["metadata"] or "{}")} for row in rows]


def rsyslogd() -> str:
    return shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


class Rsyslog:
    """`rsyslogd -n` with its own config, work directory and pid file, stopped by `stop`."""

    def __init__(self, tmp_path: Path, actions: str, name: str = "rsyslog") -> None:
        self.dir = tmp_path / name
        self.dir.mkdir()
        (self.dir / "work").mkdir()
        self.input = self.dir / "app.log"
        self.input.touch()
        self.conf = self.dir / "rsyslog.conf"
        self.conf.write_text(
            f'global(workDirectory="{self.dir / "work"}")\n'
            'module(load="imfile")\n'
            f'input(type="imfile" File="{self.input}" Tag="shop" Severity="warning" Facility="local3")\n'
            + actions
        )
        self.out = self.dir / "rsyslogd.out"
        with open(self.out, "wb") as out:
            self.process = subprocess.Popen(
                [rsyslogd(), "-n", "-f", str(self.conf), "-i", str(self.dir / "rsyslogd.pid")],
                stdout=out,
                stderr=out,
            )

    def write(self, lines: list[str]) -> None:
        with self.input.open("a") as file:
            file.writelines(line + "\n" for line in lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def log(self) -> str:
        return self.out.read_text(errors="replace")
