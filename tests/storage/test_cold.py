"""Reads across PostgreSQL and the archive: every read answers for a day exactly as before it was archived
(GET /logs with each filter, pages walked with the cursor from hot into archived days, the NDJSON export,
/traces, /stats, /stats/timeline), compared as bytes of JSON."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.main import create_app
from app.models import LEVELS
from app.query import DOCUMENT, Condition, encode_cursor, parse
from app.storage import archive, cold
from tests.storage.test_archive import DAYS, KEPT, ROWS_PER_DAY, archive_pass, drop_days, make_store
from tests.support import DB, make_settings, run

SINCE, UNTIL = f"{DAYS[0]}T00:00:00Z", f"{KEPT}T23:59:59Z"
FILTERS: list[dict[str, Any]] = [
    {},
    {"service": "search"},
    {"service": ["auth", "billing"]},
    {"not.service": "checkout"},
    {"level": "error"},
    {"not.level": ["info", "debug"]},
    {"min_level": "warn"},
    {"environment": "staging"},
    {"not.environment": "production"},
    {"trace_id": "trace5"},
    {"not.trace_id": "trace5", "service": "auth"},
    {"user_id": "user12"},
    {"not.user_id": "user12", "level": "FATAL"},
    {"session_id": "sess3"},
    {"q": "MESSAGE 12"},
    {"q": "ünïcode 5"},
    {"q": "0%_"},
    {"q": "%"},
    {"meta.status": "300"},
    {"meta.status": "300.0"},
    {"meta.ok": "true"},
    {"not.meta.ok": "true", "service": "search"},
    {"meta.region": "eu-1"},
    {"meta.http.status": "501"},
    {"not.meta.http.status": "501", "min_level": "error"},
    {"meta.ratio": "1.5"},
    {"meta.missing": "x"},
    {"service": "auth", "level": ["WARN", "ERROR"], "meta.region": "eu-1", "q": "message 1"},
]


@pytest.fixture
def fresh(db: DB, tmp_path: Path) -> Iterator[archive.Store]:
    yield make_store(db, tmp_path)
    drop_days(db)


@pytest.fixture
def reads(db: DB, database_url: str, fresh: archive.Store) -> Iterator[TestClient]:
    # Reads from the archive, no pass of its own (ARCHIVE_AFTER_DAYS unset): the test moves the days itself.
    settings = make_settings(database_url, archive_url=fresh.root)
    with TestClient(create_app(settings)) as client:
        yield client


def answers(client: TestClient) -> dict[str, Any]:
    """Every read a test compares, as the raw bytes the server sent."""
    got: dict[str, Any] = {}
    for n, params in enumerate(FILTERS):
        window = {"since": SINCE, "until": UNTIL, "limit": "25", **params}
        got[f"logs {n} {params}"] = client.get("/logs", params=window).content
    for limit in ("50", "1000"):
        pages, cursor = [], None
        while True:
            params = {
                "since": SINCE,
                "limit": limit,
                "service": ["auth", "search"],
                **({"cursor": cursor} if cursor else {}),
            }
            response = client.get("/logs", params=params)
            assert response.status_code == 200, response.text
            pages.append(response.content)
            if not (cursor := response.json()["next_cursor"]):
                break
        got[f"walk {limit}"] = pages
    got["export"] = client.get(
        "/logs", params={"since": SINCE, "min_level": "error"}, headers={"Accept": "application/x-ndjson"}
    ).content
    got["export all"] = client.get("/logs", headers={"Accept": "application/x-ndjson"}).content
    for trace in ("trace5", "trace249", "nothing"):
        got[f"trace {trace}"] = client.get(f"/traces/{trace}").content
    got["stats"] = client.get("/stats").json() | {"recent_24h": None}
    got["timeline minutes"] = client.get(
        "/stats/timeline", params={"since": f"{DAYS[0]}T01:00:00Z", "until": f"{DAYS[0]}T06:00:00Z"}
    ).content
    got["timeline hours"] = client.get("/stats/timeline", params={"since": SINCE, "until": UNTIL}).content
    return got


# The defaults, and row groups so small that a day has ~26 in 4 files: a page then reads several newest
# first across files, merges them, walks its cursor across their boundaries, and (rare matches) leaves the
# page to the scan.
@pytest.mark.parametrize(
    ("group_rows", "file_rows"), [(archive.ROW_GROUP_ROWS, archive.FILE_ROWS), (97, 700)]
)
def test_every_read_answers_the_same_before_and_after_the_days_are_archived(
    reads: TestClient,
    db: DB,
    fresh: archive.Store,
    group_rows: int,
    file_rows: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(archive, "ROW_GROUP_ROWS", group_rows)
    monkeypatch.setattr(archive, "FILE_ROWS", file_rows)
    db.fetch(
        "INSERT INTO log_counts (hour, service, level, shard, n) SELECT date_trunc('hour', created_at), service, level, 0, count(*)"
        " FROM logs WHERE created_at < $1 AND NOT deleted GROUP BY 1, 2, 3",
        KEPT.replace(day=KEPT.day + 1),
    )
    before = answers(reads)
    assert before["walk 50"][0].count(b'"id"') == 50 and len(before["walk 1000"]) == 4
    assert before["export all"].count(b"\n") >= 3 * 2500 - 3 * 26
    empty = [p for n, p in enumerate(FILTERS) if b'"logs":[{' not in before[f"logs {n} {p}"]]
    assert empty == [{"meta.missing": "x"}], empty

    moved = archive_pass(db, fresh)
    assert [m["day"] for m in moved] == [str(d) for d in DAYS]
    after = answers(reads)
    for key in before:
        assert after[key] == before[key], key


def test_row_groups_are_slices_of_time_each_sorted_by_service_then_time(
    db: DB, fresh: archive.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "ROW_GROUP_ROWS", 300)
    archive_pass(db, fresh)
    parquet = pq.ParquetFile(fresh.fs.open_input_file(fresh.full(f"day={DAYS[0]}/part-0000.parquet")))
    assert parquet.metadata.num_row_groups == -(-ROWS_PER_DAY // 300)
    previous_last = None
    for index in range(parquet.metadata.num_row_groups):
        group = parquet.read_row_group(index, columns=["id", "created_at", "service"]).to_pylist()
        keys = [(r["service"], r["created_at"], r["id"]) for r in group]
        assert keys == sorted(keys)
        times = sorted((r["created_at"], r["id"]) for r in group)
        assert previous_last is None or times[0] > previous_last  # each slice after the one before
        previous_last = times[-1]
        sorting = parquet.metadata.row_group(index).sorting_columns
        assert [parquet.schema_arrow.names[c.column_index] for c in sorting] == [
            "service",
            "created_at",
            "id",
        ]


def test_a_page_read_newest_first_equals_the_scan_when_times_tie_across_row_groups(
    db: DB, fresh: archive.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many logs share a created_at and row groups cut through them: a group ending at the page's oldest
    time may still hold a larger id, so it must be read; the scan (compared with PostgreSQL above) decides."""
    db.fetch("DELETE FROM logs WHERE created_at::date = $1", DAYS[0])
    tied = datetime(DAYS[0].year, DAYS[0].month, DAYS[0].day, 12, tzinfo=UTC)
    db.fetch(
        "INSERT INTO logs (created_at, level, log_type, service, environment, message)"
        " SELECT $1::timestamptz + (g / 40) * interval '1 second', 'INFO', 'BACKEND',"
        " (ARRAY['a','b','c'])[1 + g % 3], 'production', 'm' || g FROM generate_series(1, 400) g",
        tied,
    )
    monkeypatch.setattr(archive, "ROW_GROUP_ROWS", 7)
    monkeypatch.setattr(cold, "NEWEST_FIRST_GROUPS", 1000)  # never leave it to the scan here
    archive_pass(db, fresh)
    reader = cold.Cold(fresh.root)
    paths = [f"day={DAYS[0]}/part-0000.parquet"]
    end = tied + timedelta(days=1)
    for params in (
        {},
        {"service": ["b"]},
        {"not.service": ["a"]},
        {"q": ["m1"]},
        {"q": ["m"], "not.service": ["c"]},
        {"cursor": [cursor(tied + timedelta(seconds=5), 10**9)]},
    ):
        for limit in (1, 3, 39, 40, 41, 120, 500):
            query = parse({**params, "limit": [str(limit)]})
            newest_first = reader._newest_first(paths, query)
            assert newest_first is not None
            assert newest_first == run(reader._scan_page(paths, query, end)), (params, limit)


def cursor(moment: datetime, last_id: int) -> str:
    return encode_cursor(moment, last_id)


# PostgreSQL's rendering of archived rows, before app/storage/cold.py wrote them itself: the oracle.
RENDER = f"""
SELECT {DOCUMENT} AS doc FROM (
    SELECT id, 'epoch'::timestamptz + us * interval '1 microsecond' AS created_at, level, log_type, service,
           environment, service_version, trace_id, user_id, session_id, error_type, message, stack_trace, path,
           method, action_type, function_name, file_path, duration::numeric(10, 3) AS duration_ms,
           meta::jsonb AS metadata, n
    FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
                $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[])
         WITH ORDINALITY AS t(id, us, level, log_type, service, environment, service_version, trace_id, user_id,
              session_id, error_type, message, stack_trace, path, method, action_type, function_name,
              file_path, duration, meta, n)
) rows ORDER BY n
"""

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False, places=4) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.integers(1, 2**63 - 1), st.integers(-(10**15), 4 * 10**15), st.sampled_from(LEVELS),
            st.sampled_from(["BACKEND", "FRONTEND"]), _text, st.sampled_from(["production", "staging"]),
            *[st.none() | _text] * 12, st.none() | st.decimals(0, 9999999, places=3), st.none() | _json,
        ),
        min_size=1, max_size=5,
    )
)  # fmt: skip
def test_archived_rows_render_as_postgresql_renders_them(db: DB, rows: list[tuple[Any, ...]]) -> None:
    """Every string (quotes, backslashes, control characters, any script), times across the epoch and
    years, durations, metadata of every JSON shape in jsonb's own text (as the archive stores it)."""
    as_stored = []
    for row in rows:
        *head, duration, meta = row
        text = (
            None
            if meta is None
            else db.fetch("SELECT $1::jsonb::text AS t", json.dumps(meta, default=str))[0]["t"]
        )
        as_stored.append((*head, None if duration is None else str(duration), text))
    columns = [list(column) for column in zip(*as_stored, strict=True)]
    expected = [r["doc"] for r in db.fetch(RENDER, *columns)]
    assert cold.render(as_stored) == expected


def test_the_duckdb_renderer_covers_every_condition() -> None:
    """Every kind app/query.py can produce has a DuckDB form (a new kind fails here, not in production)."""
    query = parse(
        {
            "since": ["0"], "until": ["1000000000"], "service": ["a"], "not.level": ["info"], "min_level": ["warn"],
            "trace_id": ["t"], "q": ["x"], "meta.a.b": ["1"], "not.meta.c": ["s"], "cursor": ["WyIyMDIwLTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgMV0"],
        }
    )  # fmt: skip
    kinds = {c.kind for c in query.conditions}
    assert kinds == {"since", "until", "any", "at_least", "equals", "contains", "meta", "before"}
    where, args = cold.duckdb_where(query.conditions)
    assert where.count("?") == len(args) and "IS NOT TRUE" in where
    with pytest.raises(ValueError, match="unknown condition"):
        cold.duckdb_where([Condition("sounds_like", "message", "x")])


def test_a_deployment_without_the_archive_libraries_says_why(
    reads: TestClient,
    db: DB,
    fresh: archive.Store,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    archive_pass(db, fresh)
    monkeypatch.setattr(archive, "available", lambda **_: False)
    with TestClient(create_app(make_settings(database_url, archive_url=fresh.root))) as lambda_like:
        refused = lambda_like.get("/logs", params={"since": SINCE, "until": f"{DAYS[1]}T23:00:00Z"})
        assert refused.status_code == 422 and "pyarrow and duckdb" in refused.json()["message"]
        recent = lambda_like.get("/logs", params={"since": f"{KEPT}T00:00:00Z"})
        assert recent.status_code == 200 and len(recent.json()["logs"]) == 100


def test_archive_paths_are_relative_to_the_store(fresh: archive.Store) -> None:
    assert Path(fresh.full(archive.file_name(DAYS[0], 3))).name == "part-0003.parquet"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3-compatible server on 127.0.0.1 (moto's, in this process) with a bucket; its endpoint."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    import boto3
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    moto = DomainDispatcherApplication(create_backend_app)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        # moto 5.2 names CompleteMultipartUpload's answer ...Response; S3 (and pyarrow, which checks) ...Result.
        answer: list[Any] = []
        body = b"".join(moto(environ, lambda status, headers, *exc: answer.extend([status, headers])))
        status, headers = answer
        if b"CompleteMultipartUploadResponse" in body:
            body = body.replace(b"CompleteMultipartUploadResponse", b"CompleteMultipartUploadResult")
            headers = [(k, str(len(body)) if k.lower() == "content-length" else v) for k, v in headers]
        start_response(status, headers)
        return [body]

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"127.0.0.1:{server.server_port}"
    boto3.client("s3", endpoint_url=f"http://{endpoint}").create_bucket(Bucket="logs")
    yield endpoint
    server.shutdown()
    thread.join(10)


def test_an_archive_on_s3_answers_the_same_through_the_same_code(
    db: DB, database_url: str, fresh: archive.Store, s3: str
) -> None:
    url = f"s3://logs/cold/archive?endpoint_override={s3}&scheme=http"
    store = archive.Store.open(url)
    with TestClient(create_app(make_settings(database_url, archive_url=url))) as client:
        reads = {
            "page": {"since": SINCE, "limit": "300", "service": "auth"},
            "filtered": {"since": SINCE, "meta.http.status": "501", "q": "message 1", "limit": "1000"},
        }
        before = {name: client.get("/logs", params=params).content for name, params in reads.items()}
        before["trace"] = client.get("/traces/trace5").content
        before["export"] = client.get(
            "/logs", params={"since": SINCE}, headers={"Accept": "application/x-ndjson"}
        ).content
        assert archive_pass(db, store)
        assert sorted(store.days()) == DAYS
        import boto3

        keys = [
            o["Key"]
            for o in boto3.client("s3", endpoint_url=f"http://{s3}").list_objects_v2(Bucket="logs")[
                "Contents"
            ]
        ]
        assert f"cold/archive/day={DAYS[0]}/part-0000.parquet" in keys
        after = {name: client.get("/logs", params=params).content for name, params in reads.items()}
        after["trace"] = client.get("/traces/trace5").content
        after["export"] = client.get(
            "/logs", params={"since": SINCE}, headers={"Accept": "application/x-ndjson"}
        ).content
    assert after == before
