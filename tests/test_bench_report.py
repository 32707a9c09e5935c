from __future__ import annotations

import shutil
from pathlib import Path

from bench import report

FIXTURES = Path(__file__).parent / "fixtures" / "bench"


def rendered(tmp_path: Path) -> str:
    for name in ("db.json", "http.json"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    written = report.render(tmp_path)
    assert {p.name for p in written} == {
        "REPORT.md",
        "db_throughput.png",
        "db_latency.png",
        "http_throughput.png",
    }
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return (tmp_path / "REPORT.md").read_text()


def test_report_puts_the_claims_beside_the_measurements(tmp_path: Path) -> None:
    text = rendered(tmp_path)
    assert "| batch 10 | 2,500 logs/s | 30,000 logs/s | HTTP `b10-c32`" in text
    assert (
        "| batch 1000 (gzip) | 19,231 logs/s | 55,000 logs/s | HTTP `b1000-gzip-c8-w2` (8 clients, 2 worker(s)"
        in text
    )
    assert "| memory | ~100 MB | 90 MB peak RSS | one server process" in text
    assert "| server process peak RSS ≤ 100 MB (one worker) | 90 MB (`b1000-gzip-c8`) | yes |" in text
    assert "| gzip saving | 70% | 83% smaller |" in text


def test_report_computes_the_target_ratios(tmp_path: Path) -> None:
    text = rendered(tmp_path)
    assert "| `b1000-gzip-c8-w2` ≥ 0.80 × `raw-copy-b1000-2conn` | 1.10 × | yes |" in text
    assert "| `b1000-gzip-c8` ≥ 0.80 × `raw-copy-b1000-2conn` | 0.90 × | yes |" in text
    assert "| `b10-c32` ≥ 3.00 × `b10-c32-direct` | 4.00 × | yes |" in text
    assert "| `b1000-c1` p50 ≤ 1.3 × `raw-copy-b1000-1conn` p50 | 1.20 × (30.00 vs 25.00 ms) | yes |" in text
    assert "- **Latency.** A lone batch of 1000 took 30.00 ms through the server against 25.00 ms" in text
    assert "- **Coalescing.** Per request of 10 logs the server spent" in text


def test_report_has_the_method_table_with_a_vs_copy_column(tmp_path: Path) -> None:
    text = rendered(tmp_path)
    assert "| batch | method | rows/s | vs COPY |" in text
    assert "| 1000 | copy | 41,280 | 1.00 |" in text
    assert "| seed btrees | 32,423 | 0.79 | 44.69 | 0.20 | 31.00 |" in text
    assert "| metadata json | 45,000 | 1.09 | 29.25 | 12.50 | 90.00 |" in text
    assert "What these numbers do and don't show" in text


def test_report_says_a_quick_run_is_not_to_be_quoted(tmp_path: Path) -> None:
    assert "**Quick run**" in rendered(tmp_path)


def test_steps_table_reads_each_step_against_its_own_ceiling(tmp_path: Path) -> None:
    import json

    http = json.loads((FIXTURES / "http.json").read_text())
    results = http["results"]
    run = {"arms": results["arms"], "ceilings": results["ceilings"]}
    slower = {
        "arms": [{**a, "logs_per_s": a["logs_per_s"] / 2} for a in results["arms"]],
        "ceilings": results["ceilings"],
    }
    step = {"revision": "abc1234", "subject": "Faster parsing: details", "runs": [run, slower, run]}
    # Round three's accounting: server and PostgreSQL CPU per log beside the b1000 gzip arm (median of rounds).
    accounted = [
        {"arms": [{**a, "server_cpu_us_per_log": server, "postgres_cpu_us_per_log": 8.0}
                  if a["arm"] == "b1000-gzip-c8" else a for a in results["arms"]], "ceilings": results["ceilings"]}
        for server in (9.0, 10.0, 12.0)
    ]  # fmt: skip
    later = {"revision": "def5678", "subject": "Counted", "runs": accounted}
    steps = {
        "meta": http["meta"],
        "parameters": {"warmup_s": 1.0, "duration_s": 5.0},
        "results": [step, later],
    }
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    text = rendered(tmp_path)
    assert "## What each step bought" in text
    assert "| `abc1234` Faster parsing | 30,000 | 4.00 × | 45,000 | 90% | – | – | 1.20 × | 3 |" in text
    assert "| `def5678` Counted | 30,000 | 4.00 × | 45,000 | 90% | 10.0 | 1.25 × | 1.20 × | 3 |" in text


def test_http_table_shows_server_and_postgres_cpu_per_log() -> None:
    import json

    http = json.loads((FIXTURES / "http.json").read_text())
    arm = {**http["results"]["arms"][0], "server_cpu_us_per_log": 11.04, "postgres_cpu_us_per_log": 10.5}
    old = http["results"]["arms"][1]  # from a run before the accounting: dashes, not a failure
    text = "\n".join(
        report.http_table({"results": {"arms": [arm, old], "ceilings": http["results"]["ceilings"]}})
    )
    assert "| 11.0 | 10.5 | 1.05× |" in text
    assert "| – | – | – |" in text


def test_round_three_target_and_what_the_server_cost_is_made_of() -> None:
    from bench import report

    arm = {
        "arm": "b1000-gzip-c8",
        "server_cpu_us_per_log": 12.0,
        "postgres_cpu_us_per_log": 8.0,
        "server_peak_rss_mb": 90,
    }
    http = {"results": {"arms": [arm], "ceilings": []}}
    layers = [
        {"layer": "parse, validate, build rows", "us_per_log": 5.0},
        {"layer": "COPY: asyncpg's encoding and protocol", "us_per_log": 3.0},
        {"layer": "event loop (asyncio, uvloop)", "us_per_log": 2.0},
    ]
    profile = {
        "results": {"arms": [{"arm": "b1000-gzip-c8", "server_cpu_us_per_log": 11.0, "layers": layers}]}
    }
    rows = report.targets_table(http, profile)
    assert (
        "| server CPU per log at `b1000-gzip-c8` ≤ 0.5 × PostgreSQL's | 1.50 × (12.0 vs 8.0 µs) | no |"
        in rows
    )
    (line,) = report.server_against_postgres(http, profile)
    assert (
        "the server spent 12.0 µs of CPU per log and PostgreSQL 8.0 µs (1.50 ×; target 0.5 ×, i.e. 4.0 µs)"
        in line
    )
    # 11.0 − 5.0 − 3.0 = 3.0 µs elsewhere; 4.0 − 3.0 = 1.0 µs left of the 8.0 parse and COPY take now.
    assert "everything else (HTTP, inflate, event loop, writer) 3.0 µs" in line
    assert "leaves parse and COPY encoding 1.0 µs together, 88% less than now" in line


def test_bulk_below_its_target_gets_its_profile_beside_json_and_none_when_met() -> None:
    def arm(name: str, parse: float, copy: float) -> dict[str, object]:
        layers = [
            {"layer": "parse, validate, build rows", "us_per_log": parse},
            {"layer": "COPY: asyncpg's encoding and protocol", "us_per_log": copy},
        ]
        return {"arm": name, "server_cpu_us_per_log": parse + copy, "layers": layers,
                "top_functions": [{"function": "app/formats/bulk.py chunks", "share": 0.2}]}  # fmt: skip

    profile = {"results": {"arms": [arm("b1000-gzip-c8", 6.0, 2.5), arm(report.BULK_DOOR, 13.0, 2.0)]}}

    def agents(ratio: float) -> dict[str, object]:
        arms = [{"arm": "json b1000-gzip-c8", "vs_json": 1.0}, {"arm": report.BULK_ARM, "vs_json": ratio}]
        return {"parameters": {"target": 0.7}, "results": {"arms": arms}}

    text = "\n".join(report.bulk_gap(agents(0.62), profile))
    assert "Bulk is at 0.62 × JSON here" in text and "at most 1.43 × JSON's" in text
    lines = text.splitlines()
    # The largest difference first: parse (+7.00), then COPY (-0.50).
    parse = lines.index("| parse, validate, build rows | 6.00 | 13.00 | +7.00 |")
    assert lines[parse + 1] == "| COPY: asyncpg's encoding and protocol | 2.50 | 2.00 | -0.50 |"
    assert "| **all** | **8.50** | **15.00** | **+6.50** (1.76 ×) |" in lines
    assert "`app/formats/bulk.py chunks` 20.0%" in text
    assert report.bulk_gap(agents(0.71), profile) == []
    assert report.bulk_gap(agents(0.62), None) == []
