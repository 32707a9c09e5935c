"""`python -m bench --quick` end to end, against the test database (in a `logs_bench` database beside it)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from bench import profile
from bench.__main__ import main


def test_quick_run_writes_well_formed_results(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As an unactivated venv runs it: py-spy is not on PATH, only beside the interpreter (bench/profile.py).
    path = [d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "py-spy").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    assert profile.py_spy() == str(Path(sys.executable).parent / "py-spy")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BENCH_DATABASE_NAME", "logs_bench_test")
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    db_data = json.loads((tmp_path / "db.json").read_text())
    http_data = json.loads((tmp_path / "http.json").read_text())
    for data in (db_data, http_data):
        assert {"date", "cpu", "cores", "os", "python", "libraries", "postgres"} <= set(data["meta"])
        assert data["meta"]["quick"] is True
        assert "logs_bench_test" in data["meta"]["database"]
    assert {r["method"] for r in db_data["results"]} == {"insert", "executemany", "unnest", "copy"}
    assert all(r["rows_per_s"] > 0 for r in db_data["results"])
    arms = http_data["results"]["arms"]
    assert arms and all(a["stored_equals_acknowledged"] and a["logs"] > 0 for a in arms)
    assert all(set(a["statuses"]) == {"200"} for a in arms)
    # CPU per log from /proc: the server's tree and the test cluster's postmaster are both found.
    assert all(a["server_cpu_us_per_log"] > 0 and a["postgres_cpu_us_per_log"] > 0 for a in arms)
    assert {c["connections"] for c in http_data["results"]["ceilings"]} == {1, 2}
    limits = json.loads((tmp_path / "limits.json").read_text())["results"]
    assert all(r["cpu_s"] > 0 and r["outcome"] for r in limits)
    scale = json.loads((tmp_path / "scale.json").read_text())["results"]
    assert [r["rows"] for r in scale] == [5_000, 20_000]
    assert all(r["stats_p50_ms"] > 0 and r["full_count_p50_ms"] > 0 for r in scale)
    assert all(r["facets_24h_p50_ms"] > 0 and r["stream_delivery_p50_ms"] > 0 for r in scale)

    archived = json.loads((tmp_path / "archive.json").read_text())["results"]
    assert [r["rows"] for r in archived] == [5_000]
    assert 0 < archived[0]["parquet_bytes_per_log"] < archived[0]["pg_bytes_per_log"]
    assert archived[0]["archived newest page p50_ms"] > 0 and archived[0]["pass_peak_rss_mb"] > 0
    client = json.loads((tmp_path / "client.json").read_text())["results"]
    assert client["throughput"]["lost"] == 0 and client["log_busy"]["p50_us"] > 0
    report = (tmp_path / "REPORT.md").read_text()
    assert "## The product description's claims, measured" in report
    assert "## What exactly-once costs (same run)" in report and "`b100-c4`" in report
    assert "## The most expensive bodies (limits suite)" in report
    assert "## Scale: /stats and GET /logs as the table grows" in report
    assert "## The Python client (client suite)" in report
    assert "## Cold storage: a closed day in PostgreSQL and as Parquet (archive suite)" in report
    assert "## OTLP beside our JSON (otlp suite)" in report
    assert "## Where the server's CPU goes (profile suite)" in report
    assert "| server µs/log | PG µs/log | server/PG |" in report
    assert "## Lambda cold start (coldstart suite)" in report
    cold = json.loads((tmp_path / "coldstart.json").read_text())["results"]
    assert cold["statuses"] == [200] and 0 < cold["import_fastapi_ms"] < cold["import_handler_ms"]
    profiled = json.loads((tmp_path / "profile.json").read_text())["results"]
    assert [a["arm"] for a in profiled["arms"]] == [
        "b1000-gzip-c8", "b10-c32", *(door.name for door in profile.DOORS), profile.HANDLER
    ]  # fmt: skip
    lone = profiled["lone_batch"]["p50_ms"]
    assert all(value > 0 for value in lone.values()) and lone["stream"] > lone["COPY"]
    for arm in profiled["arms"]:
        assert arm["samples"] > 0 and arm["server_cpu_us_per_log"] > 0
        assert abs(sum(layer["share"] for layer in arm["layers"]) - 1) < 0.01
        assert any(layer["layer"].startswith("parse") for layer in arm["layers"])
        assert arm["postgres_cpu_us_per_log"] > 0
    otlp_results = json.loads((tmp_path / "otlp.json").read_text())["results"]
    otlp_arms = otlp_results["arms"]
    assert all(stage["ms_per_batch"] > 0 for stage in otlp_results["stages"])
    assert [a["arm"] for a in otlp_arms] == ["json b1000-gzip-c8", "otlp protobuf b1000-gzip-c8"]
    agents_arms = {a["arm"]: a for a in json.loads((tmp_path / "agents.json").read_text())["results"]["arms"]}
    assert agents_arms["json b1000-gzip-c8"]["statuses"].keys() == {"200"}
    assert agents_arms["loki protobuf+snappy b1000-c8"]["statuses"].keys() == {"204"}
    assert all(a["logs_per_s"] > 0 for a in agents_arms.values() if "skipped" not in a)
    assert "## The agents' formats beside our JSON (agents suite)" in report
    assert all(a["logs_per_s"] > 0 and set(a["statuses"]) == {"200"} for a in otlp_arms)
    alerts = json.loads((tmp_path / "alerts.json").read_text())["results"]
    assert alerts["rows"] == 20_000 and alerts["evaluation"]["pass_p50_ms"] > 0
    assert alerts["ingest"]["ratio"] > 0
    assert "## Alerts: evaluating rules, and ingest meanwhile (alerts suite)" in report
