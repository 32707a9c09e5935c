"""The alerts suite end to end on a small table (in a `logs_bench` database beside the test database): every
rule evaluated in each pass, a plan per shape, ingest measured with evaluation idle and running, the report's
section rendered from the results."""

from __future__ import annotations

import asyncio

import pytest

from bench import alerts, database, report
from bench.__main__ import _rows


def test_the_alerts_suite_measures_and_renders(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BENCH_DATABASE_NAME", "logs_bench_alerts_test")
    source = asyncio.run(database.prepare())
    labels: list[str] = []
    results = alerts.run(source.dsn, _rows(2_000), 3_000, 0.1, 0.5, labels.append)
    evaluation, ingest = results["evaluation"], results["ingest"]
    assert len(evaluation["pass_ms"]) == alerts.PASSES and all(ms > 0 for ms in evaluation["pass_ms"])
    assert sum(group["rules"] for group in evaluation["per_rule"].values()) == alerts.RULES
    assert set(evaluation["plans"]) == set(alerts.shapes(["a", "b"]))
    assert all("Aggregate" in plan and "Execution Time" in plan for plan in evaluation["plans"].values())
    assert [arm["alert_interval_s"] for arm in ingest["arms"]] == [86_400, 1, 86_400, 1]
    assert all(arm["logs_per_s"] > 0 for arm in ingest["arms"]) and ingest["ratio"] > 0
    assert labels[0] == "alerts: filling to 3,000 rows" and len(labels) == 2 + 2 * alerts.REPEATS
    parameters = {"rules": alerts.RULES, "passes": alerts.PASSES, "repeats": alerts.REPEATS,
                  "clients": alerts.CLIENTS, "batch": alerts.BATCH, "warmup_s": 0.1, "duration_s": 0.5}  # fmt: skip
    section = "\n".join(report.alerts_section({"parameters": parameters, "results": results}))
    assert "## Alerts: evaluating rules, and ingest meanwhile (alerts suite)" in section
    assert "against 3,000 rows" in section and "<summary>text search</summary>" in section
