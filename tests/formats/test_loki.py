"""app/formats/loki.py: Prometheus label text, the mapping of labels and lines to our columns (and that the
spliced path for lines in our own fields stores what the Python mapping stores), protobuf+snappy bodies
encoded by hand from Loki's push.proto, extreme timestamps, bad JSON values. The route and the real senders:
tests/routes/test_loki.py."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import cramjam
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import BadRequest, InvalidLogs
from app.formats import loki
from app.intake import rows
from app.models import FIELDS

# --- push.proto's wire format, by hand (independent of app/formats/loki.py's descriptor) ------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: two's complement, ten bytes
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


Line = tuple[int, int, str, list[tuple[str, str]]]


def push_request(streams: list[tuple[str, list[Line]]]) -> bytes:
    """PushRequest{1 StreamAdapter{1 labels, 2 EntryAdapter{1 Timestamp{1 s, 2 ns}, 2 line, 3 {1 name, 2 value}}}}."""
    out = b""
    for labels, lines in streams:
        stream = _field(1, labels.encode())
        for seconds, nanos, line, metadata in lines:
            stamp = (_field(1, seconds) if seconds else b"") + (_field(2, nanos) if nanos else b"")
            entry = _field(1, stamp) + _field(2, line.encode())
            entry += b"".join(_field(3, _field(1, k.encode()) + _field(2, v.encode())) for k, v in metadata)
            stream += _field(2, entry)
        out += _field(1, stream + _field(3, 12345))
    return out


def snappy(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def now_ns() -> int:
    return time.time_ns()


def mapped(body: bytes, kind: str = loki.PROTOBUF) -> list[dict[str, Any]]:
    """The entries as rows.py reads them (of two equal keys, the later)."""
    logs, _ = loki.body(loki.streams(body, kind, 10**7), 1000)
    return orjson.loads(logs)["logs"] if logs else []


def parsed(body: bytes, kind: str = loki.PROTOBUF) -> list[tuple[Any, ...]]:
    """The rows the route stores, through the same validation as POST /logs."""
    logs, _ = loki.body(loki.streams(body, kind, 10**7), 1000)
    assert logs is not None
    return rows.parse(logs, 1000)


# --- label text -----------------------------------------------------------------------------------------


def test_label_text_is_read_with_prometheus_escapes() -> None:
    text = r'{service="api", msg="say \"hi\"\n\ttab", path="C:\\dir", e="\u00e9\x41", dotted.name = "x" }'
    assert loki.parse_labels(text) == {
        "service": "api", "msg": 'say "hi"\n\ttab', "path": "C:\\dir", "e": "éA", "dotted.name": "x",
    }  # fmt: skip
    assert loki.parse_labels("{}") == {}
    assert loki.parse_labels('{a="}, b=\\"c"}') == {"a": '}, b="c'}


@pytest.mark.parametrize(
    "text",
    [
        'service="x"',
        '{service="x"',
        "{service=x}",
        '{service="x" level="y"}',
        '{1a="x"}',
        '{a="\\q"}',
        '{a="x",}',
        '{a="\\ud800"}',
        '{a="\\xff"}',
    ],
)
def test_bad_label_text_is_a_400_naming_it(text: str) -> None:
    with pytest.raises(BadRequest, match="labels"):
        loki.parse_labels(text)


# --- mapping --------------------------------------------------------------------------------------------


def test_labels_give_service_level_environment_and_the_rest_is_metadata() -> None:
    ns = now_ns()
    body = snappy(
        push_request([
            ('{job="api", container="c1", severity="warning", env="prod", host="h1"}',
             [(ns // 10**9, ns % 10**9, "plain line", [("trace", "abc")])]),
            ('{host="h2", level="notice", environment="qa"}', [(ns // 10**9, 0, "no service", [])]),
        ])
    )  # fmt: skip
    first, second = mapped(body)
    assert first["service"] == "api" and first["level"] == "WARN" and first["environment"] == "production"
    assert first["message"] == "plain line"
    assert first["metadata"] == {"container": "c1", "host": "h1", "trace": "abc"}
    assert second["service"] == loki.UNKNOWN_SERVICE and second["level"] == "INFO"
    assert "environment" not in second and second["metadata"] == {"host": "h2", "environment": "qa"}


def test_an_unknown_level_label_is_kept_in_metadata_and_info_used() -> None:
    [entry] = mapped(json.dumps({"streams": [{"stream": {"app": "a", "level": "loud"},
                                              "values": [[str(now_ns()), "x"]]}]}).encode(), loki.JSON)  # fmt: skip
    assert entry["level"] == "INFO" and entry["metadata"] == {"level": "loud"}


def test_a_json_line_is_read_like_a_logs_entry_and_wins_over_labels() -> None:
    line = json.dumps({"msg": "card declined", "severity": "error", "service": "payments", "user_id": "u-7",
                       "time": "2026-01-01T00:00:00Z", "created_at": 5, "order": 42, "metadata": {"k": 1}})  # fmt: skip
    [entry] = mapped(json.dumps({"streams": [{"stream": {"app": "web", "level": "info", "region": "eu"},
                                              "values": [[str(now_ns()), line]]}]}).encode(), loki.JSON)  # fmt: skip
    assert (entry["service"], entry["level"], entry["message"], entry["user_id"]) == (
        "payments", "ERROR", "card declined", "u-7",
    )  # fmt: skip
    assert entry["metadata"] == {
        "region": "eu",
        "time": "2026-01-01T00:00:00Z",
        "created_at": 5,
        "order": 42,
        "k": 1,
    }
    assert isinstance(entry["created_at"], float)  # the entry's timestamp, not the line's


def test_a_line_in_our_own_fields_wins_over_labels_and_metadata_merges() -> None:
    # Lines in our fields take the spliced path (no Python objects); the result must be the mapping's.
    ns = now_ns()
    plain = json.dumps({"message": "m1", "service": "line-svc", "level": "ERROR", "user_id": "u-1"})
    with_metadata = json.dumps({"message": "m2", "metadata": {"k": 1}})
    only_metadata = json.dumps({"message": "m3", "metadata": {"k": 3}, "environment": "staging"})
    body = snappy(
        push_request([
            ('{app="web", level="info", region="eu"}', [(ns // 10**9, 0, plain, []), (ns // 10**9, 1000, with_metadata, [("pod", "p1")])]),
            ('{app="api"}', [(ns // 10**9, 2000, only_metadata, [])]),
        ])
    )  # fmt: skip
    got = [(r[3], r[1], r[4], r[7], r[10], json.loads(r[-1]) if r[-1] else None) for r in parsed(body)]
    assert got == [
        ("line-svc", "ERROR", "development", "u-1", "m1", {"region": "eu"}),
        ("web", "INFO", "development", None, "m2", {"region": "eu", "pod": "p1", "k": 1}),
        ("api", "INFO", "staging", None, "m3", {"k": 3}),
    ]


def test_a_json_line_without_a_message_is_its_own_message_and_other_lines_are_text() -> None:
    lines = ['{"order": 1}', "[1, 2]", "{not json", ""]
    body = json.dumps({"streams": [{"stream": {"app": "a"}, "values": [[str(now_ns()), x] for x in lines]}]})
    entries = mapped(body.encode(), loki.JSON)
    assert [e["message"] for e in entries] == lines
    assert entries[0]["metadata"] == {"order": 1}


def test_nanoseconds_become_exact_microseconds() -> None:
    seconds = int(time.time())
    body = snappy(push_request([('{app="a"}', [(seconds, 123_456_789, "x", [])])]))
    [row] = parsed(body)
    assert row[0] == datetime.fromtimestamp(seconds, UTC).replace(microsecond=123_456)
    as_json = json.dumps({"streams": [{"stream": {}, "values": [[f"{seconds}999999999", "x"]]}]}).encode()
    [row] = parsed(as_json, loki.JSON)
    assert row[0] == datetime.fromtimestamp(seconds, UTC).replace(microsecond=999_999)


@pytest.mark.parametrize(
    "stamp", ["0", "1", "18446744073709551615"], ids=["1970", "1ns", "u64-max-year-2554"]
)
def test_far_timestamps_follow_the_window_rule(stamp: str) -> None:
    body = json.dumps({"streams": [{"stream": {}, "values": [[stamp, "x"]]}]}).encode()
    [row] = parsed(body, loki.JSON)
    assert abs((row[0] - datetime.now(UTC)).total_seconds()) < 3600
    assert json.loads(row[-1])[rows.ORIGINAL_CREATED_AT].startswith(("1970", "2554"))


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(-1, 0), (10**11, 0), (2**63 - 1, 0), (1, 10**9), (1, -1)],
    ids=["negative", "year-5138", "int64-max", "nanos-too-big", "nanos-negative"],
)  # fmt: skip
def test_protobuf_timestamps_out_of_range_are_a_400(seconds: int, nanos: int) -> None:
    body = snappy(push_request([('{app="a"}', [(seconds, nanos, "x", [])])]))
    with pytest.raises(BadRequest, match="out of range"):
        mapped(body)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([1764504000000000000, "x"], "string of digits"),
        (["-1", "x"], "string of digits"),
        (["1e18", "x"], "string of digits"),
        (["1" * 21, "x"], "out of range"),
        (["9" * 5000, "x"], "out of range"),
        (["1", 5], "line must be a string"),
        (["1"], "optional structured metadata"),
        (["1", "x", {"a": 1}], "object of strings"),
        (["1", "x", None], "object of strings"),
    ],
)
def test_bad_json_values_are_a_400_naming_the_entry(value: list[Any], problem: str) -> None:
    body = json.dumps({"streams": [{"stream": {"a": "b"}, "values": [["1", "ok"], value]}]}).encode()
    with pytest.raises(BadRequest, match=problem) as caught:
        mapped(body, loki.JSON)
    assert "streams.0.values.1" in caught.value.message


# --- the spliced path agrees with the mapping --------------------------------------------------------------

_values = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.text(max_size=6)
    | st.sampled_from(["INFO", "warn", "ERROR", "production", "qa", "GET", "get"])
    | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2)
)
_own_fields = st.fixed_dictionaries(
    {"message": st.text(max_size=5)},
    optional={name: _values for name in ("level", "service", "environment", "user_id", "method", "metadata")},
).map(json.dumps)
_lines = (
    _own_fields
    | st.dictionaries(st.sampled_from([*FIELDS, "msg", "severity", "extra"]), _values, max_size=6).map(
        json.dumps
    )
    | st.text(max_size=10)
)


@given(
    st.lists(_lines, min_size=1, max_size=6),
    st.dictionaries(
        st.sampled_from(["app", "level", "env", "region"]), st.sampled_from(["x", "warn", "prod"]), max_size=3
    ),
    st.dictionaries(st.sampled_from(["pod", "k"]), st.just("v"), max_size=1),
)
@settings(max_examples=300, deadline=None)
def test_spliced_lines_store_what_the_python_mapping_stores(
    lines: list[str], labels: dict[str, str], structured: dict[str, str]
) -> None:
    received = datetime.now(UTC)
    stream = [(int(received.timestamp()), i * 1000, line, structured or None) for i, line in enumerate(lines)]
    spliced, _ = loki.body(iter([(labels, stream)]), 100)
    common, common_metadata = loki._common(labels)
    mapped_only = orjson.dumps({"logs": [
        loki._entry(s + n // 1000 / 1e6, line, md, common, common_metadata) for s, n, line, md in stream
    ]})  # fmt: skip

    def outcome(body: bytes | None) -> Any:
        assert body is not None
        try:
            return rows.parse_partial(body, 100, received)
        except (InvalidLogs, BadRequest) as exc:
            return type(exc), exc.message

    assert outcome(spliced) == outcome(mapped_only)
