from __future__ import annotations

import gzip

from app.intake.rows import parse
from bench.data import LogFactory, body, gzipped


def test_the_generator_is_seeded() -> None:
    assert body(LogFactory(3).batch(50)) != body(LogFactory(4).batch(50))
    first, second = LogFactory(3).batch(50), LogFactory(3).batch(50)
    for a, b in zip(first, second):
        a.pop("created_at"), b.pop("created_at")  # the only field taken from the clock
        assert a == b


def test_generated_logs_pass_the_servers_validation() -> None:
    entries = LogFactory(1).batch(1000)
    assert len(parse(body(entries), 1000)) == 1000


def test_generated_logs_are_varied_and_realistic() -> None:
    entries = LogFactory(2).batch(1000)
    assert len({e["message"] for e in entries}) > 500
    assert len({e["trace_id"] for e in entries}) == 1000
    assert {e["level"] for e in entries} >= {"DEBUG", "INFO", "WARN", "ERROR"}
    errors = [e for e in entries if "stack_trace" in e]
    assert errors and all(e["stack_trace"].count("\n") >= 4 for e in errors)
    assert any(not e["message"].isascii() for e in entries)
    assert all(isinstance(e["metadata"]["http"], dict) for e in entries)


def test_compression_ratio_is_realistic_not_a_repeated_string() -> None:
    raw = body(LogFactory(5).batch(1000))
    ratio = len(raw) / len(gzipped(raw))
    assert 3 < ratio < 15
    assert gzip.decompress(gzipped(raw)) == raw
