"""Bulk documents -> our columns: the mapping alone, ecs-logging's real formatter output, and the golden
bodies of Filebeat, Fluent Bit, Vector and Logstash (tests/golden/bulk/) through the route into PostgreSQL."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import ecs_logging
import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.errors import BadRequest, PayloadTooLarge
from app.formats import bulk
from tests.support import DB

GOLDEN = Path(__file__).parent.parent / "golden" / "bulk"


def test_dotted_and_nested_forms_map_alike() -> None:
    dotted = {"log.level": "warn", "service.name": "pay", "trace.id": "ab" * 16, "user.id": "u1",
              "error.type": "KeyError", "error.stack_trace": "  File x", "message": "m", "host.name": "h"}  # fmt: skip
    nested = {"log": {"level": "warn"}, "service": {"name": "pay"}, "trace": {"id": "ab" * 16},
              "user": {"id": "u1"}, "error": {"type": "KeyError", "stack_trace": "  File x"}, "message": "m",
              "host": {"name": "h"}}  # fmt: skip
    mixed = {"log": {"level": "warn"}, "service.name": "pay", "trace": {"id": "ab" * 16}, "user.id": "u1",
             "error": {"type": "KeyError", "stack_trace": "  File x"}, "message": "m", "host": {"name": "h"}}  # fmt: skip
    expected = {"level": "WARN", "service": "pay", "trace_id": "ab" * 16, "user_id": "u1",
                "error_type": "KeyError", "stack_trace": "  File x", "message": "m"}  # fmt: skip
    for document, host in ((dotted, {"host.name": "h"}), (nested, {"host": {"name": "h"}}), (mixed, {"host": {"name": "h"}})):  # fmt: skip
        entry = bulk.entry(document, None)
        assert {k: v for k, v in entry.items() if k != "metadata"} == expected
        assert entry["metadata"] == host  # emptied objects are removed, the rest kept as it came


@pytest.mark.parametrize(
    ("priority", "level"),
    [("emerg", "FATAL"), ("alert", "FATAL"), ("crit", "FATAL"), ("err", "ERROR"), ("warning", "WARN"),
     ("notice", "INFO"), ("info", "INFO"), ("debug", "DEBUG"), ("ERROR", "ERROR"), ("Warning", "WARN")],
)  # fmt: skip
def test_syslog_priority_names(priority: str, level: str) -> None:
    assert bulk.entry({"priority": priority, "msg": "x"}, "svc")["level"] == level


def test_an_unknown_level_is_kept_and_the_entry_is_info() -> None:
    entry = bulk.entry({"severity": "chatty", "message": "x"}, "svc")
    assert entry["level"] == "INFO" and entry["metadata"] == {"level": "chatty"}


def test_the_service_comes_from_the_document_then_the_query_then_the_index() -> None:
    assert bulk.entry({"programname": "sshd"}, "default")["service"] == "sshd"
    assert bulk.entry({"service": "api", "app": "other"}, "default")["service"] == "api"
    assert bulk.entry({"service": {"name": "nested"}}, "default")["service"] == "nested"
    body = b'{"index":{"_index":"from-action-2026.11.30"}}\n{"m":1}\n{"index":{}}\n{"m":2}\n'
    by_index = bulk.items(body, "from-path", None)
    assert [item.entry["service"] for item in by_index] == ["from-action", "from-path"]  # type: ignore[index]
    assert [item.entry["service"] for item in bulk.items(body, "from-path", "query")] == ["query", "query"]  # type: ignore[index]


def test_values_of_the_wrong_type_stay_in_metadata() -> None:
    entry = bulk.entry({"message": {"text": "x"}, "log": "the line", "level": 5, "@timestamp": True}, "svc")
    assert entry["message"] == "the line" and entry["level"] == "INFO" and "created_at" not in entry
    assert entry["metadata"] == {"message": {"text": "x"}, "level": 5, "@timestamp": True}


# Documents in ECS's nested layout and near it: the objects `bulk._ecs` reads, other forms of MAPPING's names
# (dotted, split, beside and inside those objects), and values each column takes or refuses.
_VALUES = st.sampled_from(
    ["", "warn", "chatty", "GET", "production", "2026-11-30T12:00:00Z", "m", 5, 1.5, True, None]
)


def _object(*keys: str, inner: st.SearchStrategy[Any] = _VALUES) -> st.SearchStrategy[Any]:
    return st.dictionaries(st.sampled_from([*keys, "x"]), inner, max_size=len(keys) + 1) | _VALUES


_ECS = st.fixed_dictionaries(
    {},
    optional={
        "message": _VALUES, "@timestamp": _VALUES, "log.level": _VALUES,
        "log": _object("level", "origin", "origin.function", "origin.file", "origin.file.name",
                       inner=_object("function", "file", "file.name", inner=_object("name"))),
        "service": _object("name", "version", "environment"), "trace": _object("id"), "user": _object("id"),
        "session": _object("id"), "error": _object("type", "stack_trace"), "url": _object("path"),
        "http": _object("request", "request.method", inner=_object("method")), "host": _object("name"),
    },
)  # fmt: skip
_OTHER = st.dictionaries(
    st.sampled_from(["level", "msg", "service.name", "http.request", "log.origin"]), _VALUES
)


@given(_ECS, _OTHER | st.just({}))
@example({"message": "m", "log.level": 5, "log": {"level": "warn"}}, {})  # the dotted form wins, even refused
@example({"message": "m", "log": {"origin": {"file.name": "a", "file": {"name": "b"}}}}, {})
@example({"message": "m", "log": {"origin.function": "a", "origin": {"function": "b"}}}, {})
@example({"message": "m", "http": {"request.method": "GET", "request": {"method": "PUT"}}}, {})
@example({"message": "m", "service": "", "app": "a"}, {})
@example({"message": "m", "log": {"level": "warn", "origin": {}}, "trace": {}}, {})  # came empty: kept
@settings(max_examples=500, deadline=None)
def test_the_ecs_layout_reads_as_the_general_mapping(document: dict[str, Any], other: dict[str, Any]) -> None:
    document.update(other)
    fast, general = copy.deepcopy(document), copy.deepcopy(document)
    read = bulk._ecs(fast)
    if read is None:
        return
    assert read == bulk._found(general)
    assert orjson.dumps(fast) == orjson.dumps(general)  # what stays for metadata, in the same order


def test_an_ecs_document_takes_the_direct_reading() -> None:
    document = {"message": "m", "log.level": "warn", "service": {"name": "pay", "version": "v1"},
                "http": {"request": {"method": "GET"}, "status": 200}, "log": {"origin": {"file": {"name": "a.py"}}}}  # fmt: skip
    assert bulk._ecs(document) == {"message": "m", "level": "warn", "service": "pay", "service_version": "v1",
                                   "method": "GET", "file_path": "a.py"}  # fmt: skip
    assert document == {"http": {"status": 200}}
    assert bulk._ecs({"message": "m", "service.name": "pay"}) is None  # another form: the general reading


def test_lines_that_cannot_be_paired_refuse_the_request() -> None:
    for body, problem in [
        (b'{"index":{}}\n', "no source line"),
        (b'{"index":{}}\n{"a":1}\n{"upsert":{}}\n{"a":1}\n', "unknown bulk action"),
        (b"not json\n", "line 1"),
        (b'{"index":{},"create":{}}\n{}\n', "one key"),
    ]:
        with pytest.raises(BadRequest, match=problem):
            bulk.items(body, "i", None)


def test_more_actions_than_the_limit_is_a_413() -> None:
    body = b'{"delete":{"_id":"1"}}\n' * 5
    assert len(bulk.items(body, "i", None, limit=5)) == 5
    with pytest.raises(PayloadTooLarge, match="more than 4 actions"):
        bulk.items(body, "i", None, limit=4)


def test_a_source_that_is_not_an_object_is_its_items_error() -> None:
    (bad_json, not_object, good) = bulk.items(
        b'{"index":{}}\n{"a":\n{"create":{}}\n[1,2]\n{"index":{"_id":7}}\n{"message":"ok"}\n', "i", None
    )
    assert bad_json.error and bad_json.error[0] == "document_parsing_exception"
    assert not_object.error and "JSON object" in not_object.error[1]
    assert good.entry == {"message": "ok", "level": "INFO", "service": "i", "metadata": {"_id": "7"}}
    assert good.id == "7" and good.given_id and not bad_json.given_id and len(bad_json.id) == 20


def _mixed_body() -> bytes:
    lines: list[Any] = []
    for n in range(23):
        kind = n % 5
        if kind == 0:
            lines += [{"create": {"_id": f"d{n}"}}, {"message": f"m{n}", "log.level": "warn"}]
        elif kind == 1:
            lines += [{"delete": {"_id": "x"}}]
        elif kind == 2:
            lines += [{"index": {"_index": "other-2026.11.30"}}, [n]]
        elif kind == 3:
            lines += [{"update": {}}, {"doc": {}}]
        else:
            lines += [{"index": {}}, {"msg": f"m{n}", "service": {"name": "s"}, "extra": n}]
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def test_every_action_on_a_bad_index_is_refused_and_a_good_index_stays_good() -> None:
    long = "i" * 256
    lines = [
        {"index": {"_index": long}}, {"message": "1"},
        {"index": {"_index": "ok"}}, {"message": "2"},
        {"index": {"_index": long}}, {"message": "3"},
        {"create": {"_index": "ok", "_id": "a" * 513}}, {"message": "4"},
        {"create": {"_index": "ok", "_id": "x\u0000"}}, {"message": "5"},
        {"index": {"_index": "ok"}}, {"message": "6"},
        {"index": {"_index": "n\u0000"}}, {"message": "7"},
        {"index": {"_index": "n\u0000"}}, {"message": "8"},
    ]  # fmt: skip
    listed = bulk.items(b"".join(orjson.dumps(line) + b"\n" for line in lines), None, "svc")
    assert [item.error[0] if item.error else None for item in listed] == [
        "invalid_index_name_exception", None, "invalid_index_name_exception", "illegal_argument_exception",
        "illegal_argument_exception", None, "illegal_argument_exception", "illegal_argument_exception",
    ]  # fmt: skip


@pytest.mark.parametrize("size", [1, 2, 7, 23, 100])
def test_chunks_are_the_items_size_at_a_time(size: int) -> None:
    body = _mixed_body()
    chunks = list(bulk.chunks(body, "path", None, size=size))
    assert [len(chunk) for chunk in chunks[:-1]] == [size] * (len(chunks) - 1) and 0 < len(chunks[-1]) <= size
    whole = bulk.items(body, "path", None)

    def seen(item: bulk.Item) -> tuple[Any, ...]:
        # Generated ids are random per request: their number within it is what must agree.
        return (item.action, item.index, item.id if item.given_id else item.id[12:], item.given_id, item.entry,
                item.error)  # fmt: skip

    assert [seen(item) for chunk in chunks for item in chunk] == [seen(item) for item in whole]


def test_chunks_refuse_a_bad_body_before_the_last_chunk_is_given() -> None:
    unpaired = b'{"index":{}}\n{"a":1}\n' * 3 + b'{"index":{}}\n'
    read = bulk.chunks(unpaired, "i", None, size=2)
    assert len(next(read)) == 2
    with pytest.raises(BadRequest, match="line 7: the index action has no source line"):
        next(read)
    too_many = bulk.chunks(b'{"delete":{"_id":"1"}}\n' * 5, "i", None, limit=4, size=2)
    assert len(next(too_many)) == 2
    with pytest.raises(PayloadTooLarge, match="more than 4 actions"):
        next(too_many)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(bulk.ACTIONS), st.text(), st.text(), st.booleans(), st.integers(0, 2000)),
        min_size=1, max_size=8,
    ),
)  # fmt: skip
def test_the_answer_is_what_orjson_writes_for_the_items(spec: list[tuple[str, str, str, bool, int]]) -> None:
    listed = [bulk.Item(action, index, id_, True) for action, index, id_, _, _ in spec]
    statuses: dict[int, tuple[int, dict[str, Any] | None]] = {
        position: (201, None) if stored else (400, bulk.error("some_exception", f'reason {n} \u0000"', item))
        for position, ((_, _, _, stored, n), item) in enumerate(zip(spec, listed, strict=True))
    }
    created = {"_version": 1, "result": "created", "_shards": {"total": 1, "successful": 1, "failed": 0},
               "status": 201}  # fmt: skip
    expected = orjson.dumps({
        "took": 12,
        "errors": not all(stored for *_, stored, _ in spec),
        "items": [
            {item.action: {"_index": item.index, "_id": item.id, **(created if error is None else
                                                                    {"status": status, "error": error})}}
            for item, (status, error) in zip(listed, statuses.values(), strict=True)
        ],
    })  # fmt: skip
    assert bulk.answer(listed, 12, statuses) == expected


@pytest.fixture
def ecs_line() -> dict[str, Any]:
    """One line of ecs-logging's StdlibFormatter, from a real logging call with an exception."""
    logger = logging.getLogger("shop.payments")
    record: list[str] = []

    class Capture(logging.Handler):
        def emit(self, log_record: logging.LogRecord) -> None:
            record.append(self.format(log_record))

    handler = Capture()
    handler.setFormatter(ecs_logging.StdlibFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            {}["card"]
        except KeyError:
            logger.exception(
                "charge failed",
                extra={"service.name": "payments", "trace.id": "4bf92f3577b34da6a3ce929d0e0e4736",
                       "user.id": "u-42", "order": {"id": 42}},
            )  # fmt: skip
    finally:
        logger.removeHandler(handler)
    return json.loads(record[0])


def test_ecs_logging_output_lands_in_the_right_columns(
    client: TestClient, db: DB, ecs_line: dict[str, Any]
) -> None:
    body = b'{"create":{"_index":"ecs"}}\n' + json.dumps(ecs_line).encode() + b"\n"
    response = client.post("/_bulk", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 200 and response.json()["errors"] is False
    (row,) = db.fetch("SELECT *, level::text AS lv FROM logs")
    assert (row["message"], row["lv"], row["service"]) == ("charge failed", "ERROR", "payments")
    assert (row["trace_id"], row["user_id"], row["error_type"]) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "u-42",
        "KeyError",
    )
    assert '{}["card"]' in row["stack_trace"]
    assert row["function_name"] == "ecs_line" and row["file_path"] == "test_bulk.py"
    metadata = json.loads(row["metadata"])
    assert metadata["order"] == {"id": 42} and metadata["log"]["logger"] == "shop.payments"
    assert metadata["error"] == {"message": "'card'"} and metadata["process"]["pid"] > 0
    assert metadata["ecs.version"] and "log.level" not in metadata and "service" not in metadata


def post_golden(client: TestClient, name: str, path: str = "/_bulk") -> dict[str, Any]:
    response = client.post(
        path, content=(GOLDEN / name).read_bytes(), headers={"Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Elastic-Product"] == "Elasticsearch"
    return response.json()


def rows(db: DB) -> list[Any]:
    return db.fetch("SELECT *, level::text AS lv FROM logs ORDER BY id")


def test_filebeat(client: TestClient, db: DB) -> None:
    answer = post_golden(client, "filebeat.ndjson")
    assert answer["errors"] is False and [list(i) for i in answer["items"]] == [["create"], ["create"]]
    assert all(item["create"]["status"] == 201 for item in answer["items"])
    plain, parsed = rows(db)
    assert (plain["service"], plain["lv"], plain["message"]) == (
        "filebeat-8.15.0",
        "INFO",
        "GET /healthz 200",
    )
    assert json.loads(plain["metadata"])["log"] == {
        "offset": 0,
        "file": {"path": "/var/log/checkout/access.log"},
    }
    assert (parsed["service"], parsed["lv"], parsed["trace_id"]) == (
        "checkout",
        "WARN",
        "4bf92f3577b34da6a3ce929d0e0e4736",
    )


def test_fluent_bit_generate_id_gives_exactly_once(client: TestClient, db: DB) -> None:
    first = post_golden(client, "fluent-bit-es.ndjson")
    assert first["errors"] is False
    assert [i["create"]["_id"] for i in first["items"]] == ["5f2b8a4e-7c1d-3e9a-b6f0-1d2c3b4a5e6f", "0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d"]  # fmt: skip
    placed, failed = rows(db)
    assert (placed["service"], placed["message"], placed["lv"]) == ("checkout", "order 42 placed", "INFO")
    assert (failed["message"], failed["lv"]) == ("order 43 failed", "ERROR")
    assert json.loads(failed["metadata"])["stream"] == "stderr"
    again = post_golden(client, "fluent-bit-es.ndjson")  # Fluent Bit retries a whole chunk
    assert again["errors"] is True
    assert [i["create"]["status"] for i in again["items"]] == [409, 409]
    assert again["items"][0]["create"]["error"]["type"] == "version_conflict_engine_exception"
    assert db.count() == 2


def test_vector(client: TestClient, db: DB) -> None:
    answer = post_golden(client, "vector-elasticsearch.ndjson")
    assert answer["errors"] is False and all(i["index"]["status"] == 201 for i in answer["items"])
    warmed, disk = rows(db)
    assert (warmed["service"], warmed["message"]) == ("vector", "cache warmed")
    assert (disk["service"], disk["lv"]) == ("checkout", "WARN")
    assert json.loads(disk["metadata"]) == {
        "file": "/var/log/checkout/app.log",
        "host": "web-1",
        "source_type": "file",
    }


def test_logstash_fingerprint_ids(client: TestClient, db: DB) -> None:
    answer = post_golden(client, "logstash.ndjson")
    assert answer["items"][0]["index"]["_id"] == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"
    (row,) = rows(db)
    assert (row["service"], row["user_id"], row["message"]) == ("logstash", "7", "user 7 logged in")
    assert post_golden(client, "logstash.ndjson")["items"][0]["index"]["status"] == 409
    assert db.count() == 1


def test_the_bulk_references_own_example(client: TestClient, db: DB) -> None:
    answer = post_golden(client, "elasticsearch-docs.ndjson")
    statuses = [
        (action, result["_id"], result["status"])
        for item in answer["items"]
        for action, result in item.items()
    ]
    assert statuses == [("index", "1", 201), ("delete", "2", 400), ("create", "3", 201), ("update", "1", 400)]
    assert answer["errors"] is True
    assert sorted(json.loads(r["metadata"])["field1"] for r in rows(db)) == ["value1", "value3"]
    assert {r["service"] for r in rows(db)} == {"test"}


def test_golden_bodies_name_each_source() -> None:
    readme = (GOLDEN / "README.md").read_text()
    for body in GOLDEN.glob("*.ndjson"):
        assert f"`{body.name}`" in readme
