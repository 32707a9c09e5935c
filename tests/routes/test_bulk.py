"""The Elasticsearch bulk API over HTTP: the real rsyslogd's omelasticsearch against the real server, per-item
answers (400, 409, append-only), exactly once with `_id`s (retries, concurrent duplicates), gzip, limits,
API keys in every form the agents send, and the probes they make before sending."""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import json
import logging
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from app.config import IngestMode
from app.main import create_app
from app.routes.bulk import CHUNK
from tests.serverproc import start_server
from tests.support import DB, make_settings

NDJSON = {"Content-Type": "application/x-ndjson"}


def ndjson(*lines: dict[str, object]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def statuses(answer: dict[str, object]) -> list[tuple[str, int]]:
    return [(action, result["status"]) for item in answer["items"] for action, result in item.items()]  # type: ignore[attr-defined]


# --- rsyslog, for real ---------------------------------------------------------------------------------


def wait_for_rows(db: DB, count: int, seconds: float = 60) -> int:
    """Poll until `count` rows are stored (bounded); the number stored."""
    deadline = time.monotonic() + seconds
    stored = db.count()
    while stored < count and time.monotonic() < deadline:
        time.sleep(0.2)
        stored = db.count()
    return stored


def test_rsyslog_omelasticsearch_stores_every_line_once(
    server: tuple[subprocess.Popen[bytes], str], db: DB, tmp_path: Path
) -> None:
    rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    port = urlsplit(server[1]).port
    log, errors, work = tmp_path / "app.log", tmp_path / "errors.json", tmp_path / "work"
    log.touch()
    work.mkdir()
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{work}")\n'
        'module(load="imfile")\n'
        f'input(type="imfile" File="{log}" Tag="app:" Severity="error")\n'
        'module(load="omelasticsearch")\n'
        f'action(type="omelasticsearch" server="127.0.0.1" serverport="{port}" searchIndex="checkout" '
        f'bulkmode="on" errorfile="{errors}")\n'
    )
    run = uuid.uuid4().hex[:8]
    lines = [f"{run} line {i}: payment declined for order {i}" for i in range(40)]
    with open(tmp_path / "rsyslogd.out", "wb") as out:
        daemon = subprocess.Popen(
            [rsyslogd, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslogd.pid")], stdout=out, stderr=out
        )
    try:
        for half in (lines[:20], lines[20:]):  # two batches: two bulk requests at least
            with log.open("a") as file:
                file.writelines(line + "\n" for line in half)
            expected = lines.index(half[-1]) + 1
            assert wait_for_rows(db, expected) == expected, (tmp_path / "rsyslogd.out").read_text()
    finally:
        daemon.terminate()
        daemon.wait(30)
    stored = db.fetch("SELECT message, service, level::text AS level, metadata FROM logs")
    assert sorted(row["message"] for row in stored) == sorted(lines)  # each line once, after shutdown too
    assert {(row["service"], row["level"]) for row in stored} == {("checkout", "ERROR")}
    assert json.loads(stored[0]["metadata"])["facility"] == "local0"
    assert not errors.exists() or errors.read_text() == ""


# --- per-item answers ----------------------------------------------------------------------------------


def test_an_invalid_document_is_its_items_400_and_the_others_are_stored(client: TestClient, db: DB) -> None:
    body = ndjson(
        {"index": {"_index": "shop"}}, {"message": "ok 1"},
        {"create": {"_index": "shop", "_id": "long"}}, {"message": "bad", "trace.id": "x" * 40},
        {"index": {}}, {"message": "ok 2", "@timestamp": "yesterday-ish"},
        {"delete": {"_id": "a"}},
        {"update": {"_id": "a"}}, {"doc": {"message": "changed"}},
        {"create": {}}, {"message": "ok 3"},
    )  # fmt: skip
    response = client.post("/shop/_bulk", content=body, headers=NDJSON)
    assert response.status_code == 200
    answer = response.json()
    assert answer["errors"] is True and isinstance(answer["took"], int)
    assert statuses(answer) == [("index", 201), ("create", 400), ("index", 400), ("delete", 400),
                                ("update", 400), ("create", 201)]  # fmt: skip
    bad = answer["items"][1]["create"]
    assert bad["_id"] == "long" and bad["error"]["type"] == "document_parsing_exception"
    assert "trace_id" in bad["error"]["reason"]
    assert "created_at" in answer["items"][2]["index"]["error"]["reason"]
    assert "append-only" in answer["items"][3]["delete"]["error"]["reason"]
    assert sorted(r["message"] for r in db.fetch("SELECT message FROM logs")) == ["ok 1", "ok 3"]


def test_a_bulk_of_several_chunks_answers_each_item_as_one_of_one_chunk(client: TestClient, db: DB) -> None:
    # The route reads and validates CHUNK documents at a time: refusals, ids repeated across chunks and
    # the request's one time received must come out as they would for one chunk.
    count = 2 * CHUNK + 17
    lines: list[dict[str, object]] = []
    for n in range(count):
        if n % 97 == 4:
            lines += [{"delete": {"_id": "d"}}]
            continue
        document: dict[str, object] = {"message": f"m{n}"}
        if n % 89 == 5:
            document["trace.id"] = "x" * 40  # too long: this item's 400
        action: dict[str, object] = {"_index": "shop"}
        if n % 50 == 0:
            action["_id"] = f"id{n % 200}"  # id0 at 0, 200 and 400: the later two are 409
        lines += [{"create": action}, document]
    answer = client.post("/_bulk", content=ndjson(*lines), headers=NDJSON).json()
    expected = [
        ("delete", 400) if n % 97 == 4
        else ("create", 400) if n % 89 == 5
        else ("create", 409) if n % 50 == 0 and n >= 200
        else ("create", 201)
        for n in range(count)
    ]  # fmt: skip
    assert statuses(answer) == expected
    assert "trace_id" in answer["items"][5]["create"]["error"]["reason"]
    stored = db.fetch("SELECT message, created_at FROM logs")
    assert sorted(r["message"] for r in stored) == sorted(
        f"m{n}" for n, (_, status) in enumerate(expected) if status == 201
    )
    assert len({r["created_at"] for r in stored}) == 1  # every chunk's default created_at: the request's


def test_the_request_log_counts_what_was_written(
    client: TestClient, db: DB, caplog: pytest.LogCaptureFixture
) -> None:
    without_ids = ndjson({"create": {}}, {"message": "a"}, {"create": {}}, {"message": "b", "trace.id": "x" * 40},
                         {"index": {}}, {"message": "c"})  # fmt: skip
    with_ids = ndjson({"create": {"_id": "1"}}, {"message": "d"}, {"create": {"_id": "1"}}, {"message": "e"},
                      {"create": {"_id": "2"}}, {"message": "f"}, {"create": {}}, {"message": "g"})  # fmt: skip
    with caplog.at_level(logging.INFO, logger="app"):
        first = client.post("/i/_bulk", content=without_ids, headers=NDJSON).json()
        second = client.post("/i/_bulk", content=with_ids, headers=NDJSON).json()
        third = client.post("/i/_bulk", content=with_ids, headers=NDJSON).json()
    assert [s for _, s in statuses(first)] == [201, 400, 201]
    assert [s for _, s in statuses(second)] == [201, 409, 201, 201]
    assert [s for _, s in statuses(third)] == [409, 409, 409, 201]
    saved = [
        r.__dict__["saved"]
        for r in caplog.records
        if r.getMessage() == "request" and r.__dict__["path"] == "/i/_bulk"
    ]
    assert saved == [2, 3, 1]
    assert db.count() == 6


def test_ids_and_indices_postgresql_cannot_key_are_their_items_400(client: TestClient, db: DB) -> None:
    body = ndjson(
        {"create": {"_id": "a" * 513}}, {"message": "id too long"},
        {"create": {"_id": "nul\u0000"}}, {"message": "NUL in the id"},
        {"index": {"_index": "i" * 256}}, {"message": "index too long"},
        {"delete": {"_id": "x\u0000"}},
        {"create": {"_id": "a" * 512}}, {"message": "stored"},
    )  # fmt: skip
    answer = client.post("/i/_bulk", content=body, headers=NDJSON).json()
    assert statuses(answer) == [
        ("create", 400),
        ("create", 400),
        ("index", 400),
        ("delete", 400),
        ("create", 201),
    ]
    assert answer["items"][2]["index"]["error"]["type"] == "invalid_index_name_exception"
    assert [r["message"] for r in db.fetch("SELECT message FROM logs")] == ["stored"]


def test_u0000_in_a_document_or_the_service_is_stored_as_ufffd(client: TestClient, db: DB) -> None:
    body = ndjson({"create": {}}, {"message": "a\u0000b", "service": {"name": "s"}})
    assert client.post("/i/_bulk", content=body, headers=NDJSON).json()["errors"] is False
    body = ndjson({"create": {}}, {"message": "plain"})
    assert (
        client.post("/i/_bulk", params={"service": "x\u0000y"}, content=body, headers=NDJSON).status_code
        == 200
    )
    stored = sorted((r["message"], r["service"]) for r in db.fetch("SELECT message, service FROM logs"))
    assert stored == [("a\ufffdb", "s"), ("plain", "x\ufffdy")]


def test_not_one_valid_document_stores_nothing_and_says_so_per_item(client: TestClient, db: DB) -> None:
    body = ndjson({"index": {}}, {"message": "no service: no index, no ?service="}, {"delete": {"_id": "1"}})
    answer = client.post("/_bulk", content=body, headers=NDJSON).json()
    assert statuses(answer) == [("index", 400), ("delete", 400)]
    assert "service" in answer["items"][0]["index"]["error"]["reason"]
    assert db.count() == 0


@pytest.fixture(params=list(IngestMode))
def each_mode(request: pytest.FixtureRequest, db: DB, database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(database_url), ingest_mode=request.param)) as client:
        yield client


def test_a_retried_bulk_with_the_same_ids_stores_once(each_mode: TestClient, db: DB) -> None:
    client = each_mode
    body = ndjson(
        {"create": {"_index": "pay", "_id": "a"}}, {"message": "first"},
        {"index": {"_index": "pay", "_id": "b"}}, {"message": "second"},
        {"create": {"_index": "pay", "_id": "a"}}, {"message": "first again, same request"},
        {"create": {"_index": "other", "_id": "a"}}, {"message": "same id, other index"},
        {"create": {"_index": "pay"}}, {"message": "no id: stored every time"},
    )  # fmt: skip
    first = client.post("/_bulk", content=body, headers=NDJSON).json()
    assert statuses(first) == [
        ("create", 201),
        ("index", 201),
        ("create", 409),
        ("create", 201),
        ("create", 201),
    ]
    conflict = first["items"][2]["create"]
    assert conflict["error"]["type"] == "version_conflict_engine_exception" and conflict["_id"] == "a"
    retry = client.put("/_bulk", content=body, headers=NDJSON).json()
    assert statuses(retry) == [
        ("create", 409),
        ("index", 409),
        ("create", 409),
        ("create", 409),
        ("create", 201),
    ]
    messages = sorted(r["message"] for r in db.fetch("SELECT message FROM logs"))
    assert messages == ["first", "no id: stored every time", "no id: stored every time", "same id, other index",
                        "second"]  # fmt: skip


def test_concurrent_duplicates_across_processes_store_one_row(
    db: DB, database_url: str, tmp_path: Path
) -> None:
    # Two worker processes, many clients sending the same ids at once: each id wins exactly once.
    process, url = start_server({"DATABASE_URL": database_url, "WEB_CONCURRENCY": "2"}, tmp_path)
    try:
        body = ndjson(
            *[line for i in range(20) for line in ({"create": {"_id": f"doc-{i}"}}, {"message": f"m{i}"})]
        )

        def send(_: int) -> list[tuple[str, int]]:
            response = httpx.post(url + "/race/_bulk", content=body, headers=NDJSON, timeout=30)
            assert response.status_code == 200, response.text
            return statuses(response.json())

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(16)))
    finally:
        process.terminate()
        process.wait(30)
    created = [sum(1 for answer in answers if answer[i] == ("create", 201)) for i in range(20)]
    assert created == [1] * 20
    assert all(status in (201, 409) for answer in answers for _, status in answer)
    assert db.count() == 20


# --- the request as a whole ----------------------------------------------------------------------------


def test_gzip_and_the_prefixed_paths(client: TestClient, db: DB) -> None:
    body = gzip.compress(ndjson({"index": {}}, {"message": "zipped", "level": "warning"}))
    response = client.post(
        "/elasticsearch/web/_bulk?service=frontend",
        content=body,
        headers={**NDJSON, "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200 and response.json()["items"][0]["index"]["_index"] == "web"
    response = client.put(
        "/elasticsearch/_bulk", content=ndjson({"create": {"_index": "api"}}, {"msg": "plain"})
    )
    assert response.status_code == 200
    stored = db.fetch("SELECT service, message, level::text AS level FROM logs ORDER BY id")
    assert [tuple(r) for r in stored] == [("frontend", "zipped", "WARN"), ("api", "plain", "INFO")]


def test_bodies_that_cannot_be_read_are_a_400_and_store_nothing(client: TestClient, db: DB) -> None:
    for body in (b'{"index":{}}\n', b'{"index":{}}\n{}\n{"merge":{}}\n{}\n', b"", b"\x1f\x8b"):
        response = client.post("/i/_bulk", content=body, headers=NDJSON)
        assert response.status_code == 400 and response.json()["error"] == "bad_request", response.text
    assert (
        client.post("/i/_bulk", content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"}).status_code == 400
    )
    assert db.count() == 0


def test_413_for_a_body_over_the_limit(db: DB, database_url: str) -> None:
    with TestClient(create_app(make_settings(database_url, max_body_bytes=4096))) as client:
        body = ndjson(*[line for i in range(300) for line in ({"index": {}}, {"message": f"m{i}"})])
        response = client.post("/i/_bulk", content=body, headers=NDJSON)
        assert response.status_code == 413 and response.json()["error"] == "payload_too_large"
        bomb = gzip.compress(body * 10)
        assert client.post("/i/_bulk", content=bomb, headers={"Content-Encoding": "gzip"}).status_code == 413
    assert db.count() == 0


def test_503_when_postgresql_is_away(db: DB) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    app = create_app(make_settings(f"postgresql://postgres@127.0.0.1:{closed}/none", db_acquire_timeout=2))
    client = TestClient(app)  # no lifespan: the pool is opened (and fails) on first use
    response = client.post("/i/_bulk", content=ndjson({"index": {}}, {"message": "x"}), headers=NDJSON)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json()["error"] == "service_unavailable"


# --- keys and probes -----------------------------------------------------------------------------------

FULL, INGEST = "full-key-0123456789", "ingest-key-abcdef"


@pytest.fixture
def keyed(db: DB, database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(database_url, api_keys=FULL, ingest_api_keys=INGEST))) as client:
        yield client


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def api_key(token: str) -> dict[str, str]:
    return {"Authorization": f"ApiKey {token}"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": f"Bearer {INGEST}"}, 200),
        ({"X-API-Key": FULL}, 200),
        (basic("rsyslog", INGEST), 200),  # rsyslog uid/pwd, Fluent Bit HTTP_User/HTTP_Passwd
        (basic(INGEST, ""), 200),
        (basic("rsyslog", "wrong"), 401),
        ({"Authorization": f"Basic {INGEST}"}, 401),  # not base64 of user:password
        (api_key(base64.b64encode(f"logsave:{INGEST}".encode()).decode()), 200),  # Filebeat, Logstash api_key
        (api_key(INGEST), 200),
        (api_key(base64.b64encode(b"logsave:wrong").decode()), 401),
    ],
)
def test_keys_in_every_form_the_agents_send(
    keyed: TestClient, db: DB, headers: dict[str, str], status: int
) -> None:
    response = keyed.post("/k/_bulk", content=ndjson({"index": {}}, {"message": "x"}), headers=headers)
    assert response.status_code == status, response.text
    assert db.count() == (1 if status == 200 else 0)


def test_an_ingest_key_may_send_and_probe_but_not_read(keyed: TestClient, db: DB) -> None:
    ingest = basic("filebeat", INGEST)
    assert (
        keyed.put("/k/_bulk", content=ndjson({"index": {}}, {"message": "x"}), headers=ingest).status_code
        == 200
    )
    assert keyed.get("/elasticsearch/", headers=ingest).status_code == 200
    assert keyed.get("/elasticsearch/_cluster/health", headers=ingest).status_code == 200
    assert keyed.get("/logs", headers=ingest).status_code == 403
    assert keyed.get("/elasticsearch/").status_code == 401


def test_the_probes_agents_make_before_they_send(client: TestClient) -> None:
    for path in ("/elasticsearch/", "/elasticsearch"):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["X-Elastic-Product"] == "Elasticsearch"
        assert response.json()["version"]["number"] == "8.9.0" and response.json()["tagline"]
        assert client.head(path).status_code == 200
    assert client.get("/elasticsearch/_cluster/health").json()["status"] == "green"
    assert "tagline" not in client.get("/").json()  # our own GET / stays ours
