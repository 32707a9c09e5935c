"""`python -m bench aws --quick` end to end, against the test database (in a `logs_bench` database beside it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.__main__ import main

ROOT = Path(__file__).parent.parent


def test_quick_aws_suite_writes_results_and_its_report_section(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BENCH_DATABASE_NAME", "logs_bench_aws_test")
    shutil.copy(ROOT / "results" / "db.json", tmp_path)  # the report needs the main suites' files beside
    assert main(["aws", "--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "aws.json").read_text())["results"]
    assert set(results["handler_ms_per_event"]) == {
        "subscription, JSON lines", "subscription, Python runtime lines", "API Gateway POST /logs"}  # fmt: skip
    assert all(ms > 0 for ms in results["handler_ms_per_event"].values())
    arms = results["firehose"]
    assert [a["arm"].split(",")[0] for a in arms] == ["POST /logs", "POST /firehose"] * 2
    assert all(a["statuses"] == {"200": a["requests"]} and a["acknowledged"] > 0 for a in arms)
    assert "## CloudWatch Logs and Firehose (aws suite)" in (tmp_path / "REPORT.md").read_text()
