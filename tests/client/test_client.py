"""logsave.LogClient and LogSaveHandler against the real server (`python -m app`, real PostgreSQL), real
subprocesses, and a small HTTP server of the test's own where a status must be forced."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import logsave
import pytest

from tests.serverproc import free_port, start_server
from tests.support import DB

ROOT = Path(__file__).parent.parent.parent


def run_script(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A Python program as an application would be: it logs and simply exits."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def messages(db: DB, prefix: str) -> list[str]:
    return [r["message"] for r in db.fetch("SELECT message FROM logs WHERE message LIKE $1", prefix + "%")]


def test_a_program_that_logs_20000_records_and_exits_stores_each_once(
    server: tuple[subprocess.Popen[bytes], str], db: DB
) -> None:
    _, url = server
    result = run_script(
        """
        import logging, logsave
        logging.getLogger().addHandler(logsave.LogSaveHandler(service="batch-job"))
        logging.getLogger().setLevel(logging.INFO)
        log = logging.getLogger("job")
        for i in range(20_000):
            log.info("record %d", i, extra={"trace_id": f"t{i % 100}"})
        """,
        {"LOGSAVE_URL": url},
    )
    assert result.returncode == 0, result.stderr
    stored = messages(db, "record ")
    assert len(stored) == 20_000 and set(stored) == {f"record {i}" for i in range(20_000)}


def test_a_dead_server_costs_the_program_nothing_but_the_exit_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_script(
        """
        import logsave
        client = logsave.LogClient(service="svc", exit_timeout=1.0)
        for i in range(5_000):
            client.log("INFO", f"m{i}")
        print("flushed:", client.flush(0.5))
        """,
        {"LOGSAVE_URL": f"http://127.0.0.1:{free_port()}"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "flushed: False" in result.stdout
    assert "gave up on" in result.stderr
    assert time.monotonic() - started < 30  # a bound on hanging, not a speed claim


def test_a_full_queue_drops_new_logs_and_counts_them_exactly() -> None:
    # The sender waits for a full batch or a minute, so nothing leaves the queue during the test.
    client = logsave.LogClient(
        f"http://127.0.0.1:{free_port()}", service="svc", max_queue=100, flush_interval=60
    )
    for i in range(150):
        client.log("INFO", f"m{i}")
    stats = client.stats()
    assert stats["queued"] == 100
    assert stats["dropped_by_reason"] == {"queue_full": 50}
    client.close(timeout=0.1)
    assert client.stats()["failed"] == 100


def test_drops_are_reported_to_the_server(server: tuple[subprocess.Popen[bytes], str], db: DB) -> None:
    _, url = server
    client = logsave.LogClient(url, service="reporter", max_queue=10, flush_interval=60)
    for i in range(15):
        client.log("INFO", f"kept-or-dropped {i}")
    assert client.flush(10)
    client.close()
    (report,) = db.fetch(
        "SELECT level::text, metadata FROM logs WHERE message LIKE 'logsave client dropped%'"
    )
    assert report["level"] == "WARN"
    assert json.loads(report["metadata"])["logsave_client"]["dropped"] == {"queue_full": 5}
    assert len(messages(db, "kept-or-dropped")) == 10


def test_a_batch_over_the_servers_body_limit_is_split(db: DB, database_url: str, tmp_path: Path) -> None:
    process, url = start_server({"DATABASE_URL": database_url, "MAX_BODY_BYTES": str(64 * 1024)}, tmp_path)
    try:
        client = logsave.LogClient(url, service="big", flush_interval=60)
        for i in range(300):
            client.log("INFO", f"split {i} " + "x" * 1000)
        assert client.flush(30)
        client.close()
    finally:
        process.kill()
        process.wait(10)
    assert len(messages(db, "split ")) == 300


def test_a_refused_entry_costs_only_itself(server: tuple[subprocess.Popen[bytes], str], db: DB) -> None:
    _, url = server
    client = logsave.LogClient(url, service="partial", flush_interval=60)
    client.log("INFO", "good 1")
    client.log("INFO", "bad", environment="prod")  # not one of the server's environments
    client.log("INFO", "good 2")
    assert client.flush(10) is False  # not everything was stored
    client.close()
    assert sorted(messages(db, "good")) == ["good 1", "good 2"]
    assert client.stats()["dropped_by_reason"] == {"invalid": 1}


class Stub(http.server.BaseHTTPRequestHandler):
    """Answers with the statuses the test queues up, and records every request."""

    answers: ClassVar[list[tuple[int, dict[str, str], float]]] = []
    seen: ClassVar[list[tuple[float, dict[str, str]]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        Stub.seen.append((time.monotonic(), dict(self.headers)))
        status, headers, delay = Stub.answers.pop(0) if Stub.answers else (200, {}, 0.0)
        time.sleep(delay)
        body = (
            b'{"saved":1,"status":"success","rejected":[]}'
            if status == 200
            else b'{"error":"x","message":"x"}'
        )
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[str]:
    Stub.answers, Stub.seen = [], []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_with_the_same_key(stub: str, status: int) -> None:
    Stub.answers = [(status, {"Retry-After": "1"}, 0.0)]
    client = logsave.LogClient(stub, service="svc", flush_interval=60)
    client.log("INFO", "m")
    assert client.flush(15)
    client.close()
    (first, first_headers), (second, second_headers) = Stub.seen
    assert second - first >= 1.0  # the server asked for a second
    assert first_headers["Idempotency-Key"] == second_headers["Idempotency-Key"]
    assert client.stats()["retries"] == 1 and client.stats()["sent"] == 1


def test_unrecoverable_statuses_drop_and_count(stub: str, capfd: pytest.CaptureFixture[str]) -> None:
    Stub.answers = [(401, {}, 0.0), (401, {}, 0.0)]
    client = logsave.LogClient(stub, service="svc", flush_interval=60)
    client.log("INFO", "a")
    client.flush(5)
    client.log("INFO", "b")
    client.flush(5)
    client.close()
    assert client.stats()["dropped_by_reason"] == {"http_401": 2}
    assert capfd.readouterr().err.count("the server answered 401") == 1  # warned once


def test_dictconfig_during_a_slow_server_does_not_deadlock(stub: str) -> None:
    import logging.config

    Stub.answers = [(200, {}, 3.0)]  # the first batch takes three seconds to be answered
    # Loggers made before (the server's "app", which later tests read with caplog) stay enabled.
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "logsave": {"()": "logsave.LogSaveHandler", "url": stub, "service": "svc", "flush_interval": 0.01}
        },
        "root": {"handlers": ["logsave"], "level": "DEBUG"},
    }
    logging.config.dictConfig(config)
    logging.getLogger("app").info("while the server is slow")
    time.sleep(0.2)  # the sender is now waiting on the slow answer
    done = threading.Event()

    def reconfigure() -> None:
        logging.config.dictConfig(
            {"version": 1, "disable_existing_loggers": False, "root": {"handlers": [], "level": "WARNING"}}
        )
        done.set()

    threading.Thread(target=reconfigure, daemon=True).start()
    assert done.wait(30), "dictConfig deadlocked with the handler's flush"


def test_what_the_sender_or_its_http_library_logs_never_comes_back(
    server: tuple[subprocess.Popen[bytes], str], db: DB
) -> None:
    _, url = server
    result = run_script(
        """
        import http.client, logging, logsave
        # An HTTP library that logs at DEBUG on every request, as urllib3 does.
        original = http.client.HTTPConnection.request
        def chatty(self, *args, **kwargs):
            logging.getLogger("urllib3.connectionpool").debug("POST %s", args[1])
            return original(self, *args, **kwargs)
        http.client.HTTPConnection.request = chatty
        handler = logsave.LogSaveHandler(service="reentrant", flush_interval=0.05)
        logging.basicConfig(level=logging.DEBUG, handlers=[handler])
        for i in range(50):
            logging.getLogger("app").debug("app %d", i)
        print(handler.client.flush(10), handler.client.stats()["sent"])
        """,
        {"LOGSAVE_URL": url},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "50"]
    assert db.count() == 50


def test_a_forked_child_sends_only_its_own_logs(server: tuple[subprocess.Popen[bytes], str], db: DB) -> None:
    _, url = server
    result = run_script(
        """
        import os, logsave
        client = logsave.LogClient(service="forking", flush_interval=60)
        for i in range(10):
            client.log("INFO", f"parent {i}")
        pid = os.fork()
        if pid == 0:
            for i in range(5):
                client.log("INFO", f"child {i}")
            client.close()
            os._exit(0)
        os.waitpid(pid, 0)
        client.close()
        """,
        {"LOGSAVE_URL": url},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(messages(db, "parent")) == [f"parent {i}" for i in range(10)]
    assert sorted(messages(db, "child")) == [f"child {i}" for i in range(5)]


def test_an_oversized_log_is_cut_and_its_batch_stored(
    server: tuple[subprocess.Popen[bytes], str], db: DB
) -> None:
    _, url = server
    client = logsave.LogClient(url, service="big", flush_interval=60)
    client.log("INFO", "huge " + "x" * 5_000_000)
    client.log("INFO", "small")
    assert client.flush(30)
    client.close()
    huge = db.fetch("SELECT length(message) AS n FROM logs WHERE message LIKE 'huge%'")[0]["n"]
    assert huge < 300_000 and messages(db, "small") == ["small"]
    assert client.stats()["truncated"] == 1


@pytest.fixture
def own_postgres_server(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    from app import embedded
    from tests.test_faults import _pg_ctl

    url = embedded.start(tmp_path / "pgdata", "clientfaults")
    process, server_url = start_server({"DATABASE_URL": url, "DB_ACQUIRE_TIMEOUT": "1"}, tmp_path)
    yield url, server_url, tmp_path / "pgdata" / "pg"
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    _pg_ctl(tmp_path / "pgdata" / "pg", "stop", "-m", "immediate")


def test_postgres_away_for_seconds_loses_nothing_and_doubles_nothing(
    own_postgres_server: tuple[str, str, Path],
) -> None:
    from tests.test_faults import _pg_ctl

    database_url, url, pgdata = own_postgres_server
    client = logsave.LogClient(url, service="outage", flush_interval=0.05, batch_size=100)
    for i in range(1000):
        client.log("INFO", f"before {i}")
    assert client.flush(30)
    _pg_ctl(pgdata, "stop", "-m", "fast")
    for i in range(1000):
        client.log("INFO", f"during {i}")
        time.sleep(0.002)
    time.sleep(1)
    _pg_ctl(pgdata, "start")
    assert client.flush(60)
    client.close()
    db = DB(database_url)
    assert sorted(messages(db, "before")) == sorted(f"before {i}" for i in range(1000))
    during = messages(db, "during")
    assert len(during) == 1000 and len(set(during)) == 1000
    assert client.stats()["retries"] > 0


def test_a_drop_report_never_makes_a_full_batch_too_large(
    server: tuple[subprocess.Popen[bytes], str], db: DB
) -> None:
    _, url = server
    client = logsave.LogClient(url, service="full", max_queue=1000, flush_interval=60)
    for i in range(1100):
        client.log("INFO", f"full batch {i}")
    assert client.flush(30)
    client.close()
    assert (
        len(messages(db, "full batch")) == 1000
    )  # the server's MAX_BATCH_SIZE is 1000: the report went alone
    (report,) = db.fetch("SELECT metadata FROM logs WHERE message LIKE 'logsave client dropped%'")
    assert json.loads(report["metadata"])["logsave_client"]["dropped"] == {"queue_full": 100}
