"""The search suite end to end on a tiny week (in a `logs_bench` database beside the test database): needles
found once in each place by a real server, answers compared across arms, the index's build, ingest per arm,
and the report's section rendered from the results."""

from __future__ import annotations

import asyncio
import copy
import re
from datetime import UTC, datetime, timedelta

import pytest

from bench import database, report, search
from bench.__main__ import _rows


def test_the_ids_occur_once_and_look_like_real_ones() -> None:
    numbers = [*range(50_000), *range(search.NEEDLE_BASE, search.NEEDLE_BASE + 6)]
    requests, orders = {search.request_id(k) for k in numbers}, {search.order_id(k) for k in numbers}
    assert len(requests) == len(orders) == len(numbers)
    assert all(re.fullmatch(r"req-[0-9a-f]{12}", r) for r in requests)
    assert all(re.fullmatch(r"ord-[0-9]{8}", o) for o in orders)


def test_the_week_puts_each_needle_on_its_day() -> None:
    now = datetime(2026, 12, 6, 15, 30, tzinfo=UTC)
    week = search.Week(now, 10_000)
    midnight = datetime(2026, 12, 6, tzinfo=UTC)
    assert week.days[0] == now.date() - timedelta(days=search.DAYS - 1) and week.days[-1] == now.date()
    assert week.at(week.first_today - 1) < midnight <= week.at(week.first_today)
    assert week.at(week.logs - 1) < now
    found = search.needles(week, _rows(10))
    assert found["today"].rows[0][0].date() == now.date() and found["today"].rows[0][0] < now
    assert found["closed"].rows[0][0].date() not in week.archived_days + [now.date()]
    assert found["archived"].rows[1][0].date() == week.archived_days[0]
    assert (
        found["closed"].token in found["closed"].rows[0][10]
        and found["closed"].phrase in found["closed"].rows[1][10]
    )
    assert f'"order_id":"{found["closed"].order}"' in found["closed"].rows[0][18]


def test_the_search_suite_measures_and_renders(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BENCH_DATABASE_NAME", "logs_bench_search_test")
    # Two arms whether or not the app has the index yet (without it, SEARCH_INDEX is ignored by the server
    # and both arms scan): every path of the suite runs.
    arms = search.index_values() or [("off", "false"), ("on", "true")]
    monkeypatch.setattr(search, "index_values", lambda: arms)
    monkeypatch.setattr(search, "REPEATS", 1)
    monkeypatch.setattr(search, "SETTLE_POLL_S", 0.1)
    monkeypatch.setattr(search, "TAIL_S", 0.2)
    source = asyncio.run(database.prepare())
    labels: list[str] = []
    results = search.run(source.dsn, _rows(500), 3_000, 0.1, 0.3, labels.append)

    corpus = results["corpus"]
    assert corpus["logs"] == 3_000 + 2 * len(search.PLACES)
    assert corpus["postgres_logs"] > 0 and corpus["archived_logs"] > 0
    assert corpus["postgres_logs"] + corpus["archived_logs"] == corpus["logs"]
    assert results["load"]["posted"] > 0 and results["load"]["copied"] > 0
    assert [a["arm"] for a in results["arms"]] == [a for a, _ in arms]
    for arm in results["arms"]:
        queries = {q["name"]: q for q in arm["queries"]}
        assert len(queries) == search.QUERIES_PER_ARM
        for place in search.PLACES:
            for kind in ("token needle", "metadata needle", "phrase"):
                assert (
                    queries[f"{kind}, {place}"]["matches"] == 1 and queries[f"{kind}, {place}"]["runs"] >= 3
                )
        assert queries["substring, whole week"]["rows_per_s"] > 0
        assert queries["substring, whole week"]["rows_in_range"] == corpus["logs"]
    assert results["identical"] == {arm: True for arm, _ in arms[1:]}
    assert results["build"]["cpu_s"] > 0 and results["index"]["build_cpu_us_per_log"] > 0
    assert results["arms"][1]["settle"]["steady"]
    ingest = results["ingest"]
    assert [r["arm"] for r in ingest["runs"]] == [a for a, _ in arms]
    assert all(r["postgres_cpu_us_per_log"] > 0 and r["logs"] > 0 for r in ingest["runs"])
    assert set(ingest["postgres_cpu_ratio"]) == {a for a, _ in arms[1:]}
    assert len(labels) == search.steps(arms)

    parameters = {"logs": 3_000, "pool": 500, "days": search.DAYS, "archived_days": search.ARCHIVED_DAYS,
                  "order_every": search.ORDER_EVERY, "runs": search.RUNS, "min_runs": search.MIN_RUNS,
                  "budget_s": search.BUDGET_S, "query_timeout_s": search.QUERY_TIMEOUT_S, "batch": search.BATCH,
                  "clients": search.CLIENTS, "repeats": 1, "tail_s": search.TAIL_S, "warmup_s": 0.1,
                  "duration_s": 0.3, "target_ms": search.TARGET_MS,
                  "target_postgres_cpu_ratio": search.TARGET_PG_RATIO}  # fmt: skip
    section = "\n".join(report.search_section({"parameters": parameters, "results": results}))
    assert "## Search: the needle in a week of logs (search suite)" in section
    assert "| token needle, archived: p50 ≤ 300 ms |" in section
    assert "| PostgreSQL CPU per stored log at ingest ≤ 1.05× `off` |" in section
    assert f"`{arms[1][0]}` identical" in section

    # Without the setting: only the plain scan, and the report says so.
    plain = copy.deepcopy(results)
    plain["arms"] = plain["arms"][:1]
    plain["identical"] = {}
    for key in ("build", "index", "ingest"):
        del plain[key]
    plain["setting"] = {"name": "SEARCH_INDEX", "present": False, "arms": ["off"], "note": "no field"}
    section = "\n".join(report.search_section({"parameters": parameters, "results": plain}))
    assert "**no field.**" in section and "| not measured (no index) |" in section
