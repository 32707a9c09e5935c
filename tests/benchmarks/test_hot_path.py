"""Micro-benchmarks of the in-process hot path of POST /logs, 1000 realistic logs per batch.

`pytest` runs each once as a plain test (benchmarks are disabled in pyproject.toml, and nothing here
asserts a time); `pytest tests/benchmarks --benchmark-enable` measures them.
"""

from __future__ import annotations

import pytest

from app.intake import rows
from app.intake.decode import decode
from app.intake.rows import COLUMNS, parse
from app.models import batch_adapter
from bench.data import LogFactory, body, gzipped

RAW = body(LogFactory(11).batch(1000))
GZIPPED = gzipped(RAW)


@pytest.mark.benchmark(group="decompress")
def test_gunzip_1000_logs(benchmark) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(decode, GZIPPED, "gzip", 10 * 1024 * 1024) == RAW


@pytest.mark.benchmark(group="decompress")
def test_identity_1000_logs(benchmark) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(decode, RAW, None, 10 * 1024 * 1024) is RAW


@pytest.mark.benchmark(group="validate")
def test_first_pass_msgspec_decode_1000_logs(benchmark) -> None:  # type: ignore[no-untyped-def]
    batch = benchmark(rows._RAW.decode, RAW)
    assert len(batch.logs) == 1000
    assert batch.logs[0].service


@pytest.mark.benchmark(group="validate")
def test_second_pass_pydantic_validate_1000_logs(benchmark) -> None:  # type: ignore[no-untyped-def]
    batch = benchmark(batch_adapter(1000).validate_json, RAW)
    assert len(batch["logs"]) == 1000
    assert batch["logs"][0]["service"]


@pytest.mark.benchmark(group="rows")
def test_parse_validate_and_build_rows_1000_logs(benchmark) -> None:  # type: ignore[no-untyped-def]
    built = benchmark(parse, RAW, 1000)
    assert len(built) == 1000
    assert all(len(row) == len(COLUMNS) for row in built)
    assert built[0][COLUMNS.index("metadata")].startswith("{")
