"""The logql suite end to end at a tiny scale (in a `logs_bench` database beside the test database): every
query answers, the rollup's ingest cost is measured with and without it, and the report renders it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench import database, logql, report
from bench.__main__ import _rows


def test_the_logql_suite_measures_and_renders(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BENCH_DATABASE_NAME", "logs_bench_logql_test")
    monkeypatch.setattr(logql, "RUNS", 1)
    source = asyncio.run(database.prepare())
    labels: list[str] = []
    results = logql.run(source.dsn, _rows(2_000), 20_000, labels.append, rounds=1)

    queries = results["queries"]
    assert set(queries) == set(logql.QUERIES)
    # A week of 20,000 logs over 20 services: the last day has some of every kind.
    assert all(q["series"] > 0 for q in queries.values()), queries
    assert queries["logs, limit 1000, backward"]["series"] > 0
    # The same answers with the start on the minute (the rollup) and a second off it (rows) have the same
    # series: rates by 20 services.
    assert queries["sum by service rate 5m"]["series"] == 20
    assert queries["sum by service rate 5m, start off the minute"]["series"] == 20
    ingest = results["ingest"]["postgres_cpu_us_per_log"]
    assert ingest["with rollup"] is None or ingest["with rollup"] > 0
    assert labels[0] == "logql: ingest cost" and any("seeding" in label for label in labels)

    section = "\n".join(
        report.logql_section({"meta": {"cores": 2}, "parameters": {"runs": 1}, "results": results})
    )
    assert "## LogQL" in section and "sum by (service_name)" in section and "with the rollup" in section
    json.dumps(results)  # what the suite saves
