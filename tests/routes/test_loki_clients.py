"""Loki's query API against the real server (`python -m app`) with real clients: loki-reader-core, lgtm-cli
(from a venv of its own: it needs Python >= 3.12), and Grafana's own requests as its Loki data source
(pkg/tsdb/loki) sends them: the health check, logs with categorize-labels, log volume, log context, the
label browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from loki_reader_core import LokiClient

from tests.serverproc import start_server
from tests.support import DB, log_entry

S = 10**9
NOW = time.time_ns()
DATA = [
    log_entry(created_at=(NOW - (60 - i) * S) / S, service=service, level=level, message=f"{service} {level.lower()} {i}",
              trace_id=f"trace{i}", metadata={"region": "eu" if i % 2 else "us"})
    for i, (service, level) in enumerate(
        [("checkout", "INFO"), ("checkout", "ERROR"), ("checkout", "FATAL"), ("search", "WARN"),
         ("search", "INFO"), ("checkout", "DEBUG")]
    )
]  # fmt: skip


@pytest.fixture(scope="module")
def url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    DB(database_url).fetch("TRUNCATE logs, log_counts, log_minutes")
    process, base = start_server({"DATABASE_URL": database_url}, tmp_path_factory.mktemp("loki-clients"))
    try:
        response = httpx.post(base + "/logs", json={"logs": DATA}, timeout=30)
        assert response.status_code == 200, response.text
        yield base
    finally:
        process.kill()
        process.wait(10)


# --- loki-reader-core --------------------------------------------------------------------------------


def test_loki_reader_core_finds_the_app_and_its_severity(url: str) -> None:
    with LokiClient(base_url=url) as client:
        result = client.query(app="checkout", severity="error", since_hours=1)
        lines = sorted(entry.message for stream in result.streams for entry in stream.entries)
        assert lines == ["checkout error 1", "checkout fatal 2"]
        everything = client.query(app="search", since_hours=1)
        assert sorted(e.message for s in everything.streams for e in s.entries) == [
            "search info 4",
            "search warn 3",
        ]
        assert client.get_labels() == ["environment", "level", "service_name"]
        assert client.get_label_values("service_name") == ["checkout", "search"]
        series = client.get_series(match=['{service_name="search"}'])
        assert sorted(s["level"] for s in series) == ["info", "warn"]
        counted = client.query(logql='sum by (level) (count_over_time({service_name="checkout"}[1h]))')
        values = {s.labels["level"]: s.samples[0].value for s in counted.metric_series}
        assert values == {"debug": 1.0, "error": 1.0, "fatal": 1.0, "info": 1.0}


# --- lgtm-cli (Python >= 3.12, in a venv of its own) ------------------------------------------------------

LGTM = "lgtm-cli==1.5.0"


def _python312() -> str | None:
    """A Python >= 3.12 that runs on this machine: among pyenv's versions, or on PATH (pyenv's shims on PATH
    may name versions that are not active, so each candidate is tried)."""
    candidates = []
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
        candidates += [
            str(v / "bin" / "python") for v in sorted(Path(root, "versions").glob("3.1[2-9]*"), reverse=True)
        ]
    except (OSError, subprocess.CalledProcessError):
        pass
    candidates += [found for name in ("python3.13", "python3.12") if (found := shutil.which(name))]
    for candidate in candidates:
        check = "import sys; sys.exit(sys.version_info < (3, 12))"
        try:
            if subprocess.run([candidate, "-c", check], capture_output=True, check=False).returncode == 0:
                return candidate
        except OSError:
            continue
    return None


@pytest.fixture(scope="module")
def lgtm(url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    python = _python312()
    if python is None:
        pytest.skip("lgtm-cli needs Python >= 3.12 and none was found (on PATH or in pyenv's versions)")
    home = tmp_path_factory.mktemp("lgtm")
    subprocess.run([python, "-m", "venv", str(home / "venv")], check=True)
    installed = subprocess.run(
        [str(home / "venv" / "bin" / "pip"), "install", "-q", LGTM],
        capture_output=True,
        text=True,
        check=False,
    )
    if installed.returncode != 0:
        pytest.skip(f"cannot install {LGTM} into a Python >= 3.12 venv: {installed.stderr[-300:]}")
    config = home / "config.yaml"
    config.write_text(json.dumps({"default_instance": "here", "instances": {"here": {"loki": {"url": url}}}}))

    def run(*args: str) -> Any:
        done = subprocess.run(
            [str(home / "venv" / "bin" / "lgtm"), "-c", str(config), "loki", *args],
            capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(home)}, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    return run


def test_lgtm_cli_query_instant_labels_values_series(lgtm: Any) -> None:
    # lgtm-cli sends RFC 3339 start/end (the last 15 minutes by default).
    found = lgtm("query", '{service_name="checkout", level=~"error|fatal"}')
    assert sorted(v[1] for s in found["data"]["result"] for v in s["values"]) == [
        "checkout error 1",
        "checkout fatal 2",
    ]
    instant = lgtm("instant", 'sum by (service_name) (count_over_time({level=~".+"}[1h]))')
    assert {r["metric"]["service_name"]: r["value"][1] for r in instant["data"]["result"]} == {
        "checkout": "4",
        "search": "2",
    }
    assert lgtm("labels")["data"] == ["environment", "level", "service_name"]
    assert lgtm("label-values", "level")["data"] == ["debug", "error", "fatal", "info", "warn"]
    series = lgtm("series", '{service_name="search"}')["data"]
    assert sorted(s["level"] for s in series) == ["info", "warn"]


# --- Grafana's own requests (pkg/tsdb/loki) ----------------------------------------------------------------

GRAFANA = {"X-Loki-Response-Encoding-Flags": "categorize-labels", "X-Query-Tags": "Source=grafana"}


def test_grafana_save_and_test(url: str) -> None:
    response = httpx.get(
        url + "/loki/api/v1/query",
        params={"query": "vector(1)+vector(1)", "time": "4000000000"},
        headers=GRAFANA,
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["resultType"] == "vector" and [float(r["value"][1]) for r in data["result"]] == [2.0]


def test_grafana_explore_logs_volume_and_context(url: str) -> None:
    start, end = NOW - 3600 * S, NOW + S
    logs = httpx.get(url + "/loki/api/v1/query_range", headers=GRAFANA, params={
        "direction": "backward", "end": str(end), "limit": "1000", "query": '{service_name="checkout"} |= "error"',
        "start": str(start), "step": "2000ms",
    }).json()["data"]  # fmt: skip
    assert data_flags(logs) == ["categorize-labels"]
    [stream] = logs["result"]
    assert stream["stream"] == {"environment": "development", "level": "error", "service_name": "checkout"}
    [(ns, line, extra)] = stream["values"]
    assert line == "checkout error 1" and int(ns) == round(DATA[1]["created_at"] * 1e6) * 1000
    assert (
        extra["structuredMetadata"]["trace_id"] == "trace1" and extra["structuredMetadata"]["region"] == "eu"
    )

    volume = httpx.get(url + "/loki/api/v1/query_range", headers=GRAFANA, params={
        "query": 'sum by (level, detected_level) (count_over_time({service_name="checkout"} | drop __error__[1m]))',
        "start": str(start), "end": str(end), "step": "60000ms",
    }).json()["data"]  # fmt: skip
    totals: dict[str, float] = {}
    for series in volume["result"]:
        assert series["metric"]["level"] == series["metric"]["detected_level"]
        totals[series["metric"]["level"]] = sum(float(v) for _, v in series["values"])
    assert totals == {"debug": 1, "error": 1, "fatal": 1, "info": 1}

    # Log context: two-hour windows on each side of the row, `=` matchers from its stream labels.
    selector = '{environment="development", level="error", service_name="checkout"}'
    before = httpx.get(url + "/loki/api/v1/query_range", headers=GRAFANA, params={
        "query": selector, "start": str(int(ns) - 7200 * S), "end": ns, "limit": "10", "direction": "backward",
        "step": "1000ms",
    }).json()["data"]["result"]  # fmt: skip
    after = httpx.get(url + "/loki/api/v1/query_range", headers=GRAFANA, params={
        "query": selector, "start": ns, "end": str(int(ns) + 7200 * S), "limit": "10", "direction": "forward",
        "step": "1000ms",
    }).json()["data"]["result"]  # fmt: skip
    assert before == [] and [v[1] for s in after for v in s["values"]] == ["checkout error 1"]


def data_flags(data: dict[str, Any]) -> list[str]:
    return data.get("encodingFlags", [])


def test_grafana_label_browser(url: str) -> None:
    span = {"start": str(NOW - 3600 * S), "end": str(NOW + S)}
    assert httpx.get(url + "/loki/api/v1/labels", params=span).json()["data"] == [
        "environment",
        "level",
        "service_name",
    ]
    values = httpx.get(url + "/loki/api/v1/label/service_name/values", params=span).json()["data"]
    assert values == ["checkout", "search"]
    stats = httpx.get(
        url + "/loki/api/v1/index/stats", params={**span, "query": '{service_name="search"}'}
    ).json()
    assert stats["entries"] == 2 and stats["streams"] == 2
    fields = httpx.get(
        url + "/loki/api/v1/detected_fields", params={**span, "query": '{service_name="checkout"}'}
    ).json()["fields"]
    assert {"label": "region", "type": "string", "cardinality": 2, "parsers": None} in fields
    info = httpx.get(url + "/loki/api/v1/status/buildinfo").json()
    assert info["version"].split(".")[0] == "3"
