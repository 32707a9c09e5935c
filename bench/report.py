"""results/*.json -> results/REPORT.md and results/*.png. Reads only the JSON, so a report can be
re-rendered (`python -m bench report`) without measuring again."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# What the product description claims (../shared/seed), next to which we put what we measure.
CLAIMS = {
    "batch 10": "2,500 logs/s",
    "batch 100": "12,000 logs/s",
    "batch 1000 (gzip)": "19,231 logs/s",
    "p99 per batch (COPY)": "< 5 ms",
    "memory": "~100 MB",
    "gzip saving": "70%",
    "COPY vs INSERT": "10x faster",
    "row-by-row INSERT": "1,000 logs/s",
}
# Throughput targets, as ratios measured in one run: (arm, reference, goal). "ceiling": logs/s at least
# goal x the reference's rows/s; "coalescing": logs/s at least goal x the reference's; "latency": p50 at
# most goal x the reference's.
TARGETS = [
    ("ceiling", "b1000-gzip-c8-w2", "raw-copy-b1000-2conn", 0.80),
    ("ceiling", "b1000-gzip-c8", "raw-copy-b1000-2conn", 0.80),
    ("coalescing", "b10-c32", "b10-c32-direct", 3.0),
    ("coalescing", "b10-c32-w2", "b10-c32-direct-w2", 3.0),
    ("latency", "b1000-c1", "raw-copy-b1000-1conn", 1.3),
]
MEMORY_MB = 100
SERVER_PER_POSTGRES = 0.5


def read(out: Path, name: str) -> dict[str, Any] | None:
    path = out / name
    return json.loads(path.read_text()) if path.exists() else None


def render(out: Path) -> list[Path]:
    db_data, http_data, steps_data = read(out, "db.json"), read(out, "http.json"), read(out, "steps.json")
    if db_data is None and http_data is None:
        raise SystemExit(f"no db.json or http.json in {out}: run `python -m bench` first")
    written = [out / "REPORT.md"]
    alerts_data, search_data = read(out, "alerts.json"), read(out, "search.json")
    syslog_data = read(out, "syslog.json")
    (out / "REPORT.md").write_text(
        markdown(
            db_data,
            http_data,
            steps_data,
            read(out, "limits.json"),
            read(out, "scale.json"),
            read(out, "client.json"),
            read(out, "otlp.json"),
            read(out, "profile.json"),
            read(out, "coldstart.json"),
            read(out, "aws.json"),
            read(out, "agents.json"),
            read(out, "archive.json"),
        )
        + ("\n".join(alerts_section(alerts_data)) + "\n" if alerts_data else "")
        + ("\n".join(search_section(search_data)) + "\n" if search_data else "")
        + ("\n".join(syslog_section(syslog_data)) + "\n" if syslog_data else "")
        + ("\n".join(logql_section(logql_data)) + "\n" if (logql_data := read(out, "logql.json")) else "")
    )
    if db_data:
        written += [
            plot_db_throughput(db_data, out / "db_throughput.png"),
            plot_db_latency(db_data, out / "db_latency.png"),
        ]
    if http_data:
        written.append(plot_http(http_data, out / "http_throughput.png"))
    return written


# --- numbers ------------------------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _arm(http_data: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if not http_data:
        return None
    return _find(http_data["results"], name)


def _find(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    for result in results["arms"] + results["ceilings"]:
        if result["arm"] == name:
            return result
    return None


def _db(
    db_data: dict[str, Any] | None, method: str, batch: int, schema: str = "ours"
) -> dict[str, Any] | None:
    if not db_data:
        return None
    for result in db_data["results"]:
        if result["method"] == method and result["batch"] == batch and result["schema"] == schema:
            return result
    return None


def _fastest_http(
    http_data: dict[str, Any] | None, batch: int, gzip: bool | None = None
) -> dict[str, Any] | None:
    if not http_data:
        return None
    arms = [
        a for a in http_data["results"]["arms"] if a["batch"] == batch and (gzip is None or a["gzip"] == gzip)
    ]
    return max(arms, key=lambda a: a["logs_per_s"], default=None)


def claims_table(db_data: dict[str, Any] | None, http_data: dict[str, Any] | None) -> list[str]:
    rows = ["| claim (product description) | claimed | measured here | from |", "|---|---|---|---|"]

    def add(claim: str, measured: str, source: str) -> None:
        rows.append(f"| {claim} | {CLAIMS[claim]} | {measured} | {source} |")

    for batch, claim in ((10, "batch 10"), (100, "batch 100"), (1000, "batch 1000 (gzip)")):
        arm = _fastest_http(http_data, batch, gzip=True if batch == 1000 else None)
        if arm:
            add(
                claim,
                f"{_n(arm['logs_per_s'])} logs/s",
                f"HTTP `{arm['arm']}` ({arm['clients']} clients, {arm.get('workers', 1)} worker(s), {arm['mode']})",
            )
    copy = _db(db_data, "copy", 1000)
    if copy:
        add("p99 per batch (COPY)", f"{_ms(copy['p99_ms'])} ms", "db `copy` batch 1000, 1 connection")
    if http_data:
        arms = http_data["results"]["arms"]
        single = [
            a for a in arms if a.get("workers", 1) == 1 and a.get("server", "uvicorn") == "uvicorn"
        ] or arms
        peak = max(single, key=lambda a: a["server_peak_rss_mb"])
        add(
            "memory",
            f"{peak['server_peak_rss_mb']:.0f} MB peak RSS",
            f"one server process, worst arm `{peak['arm']}`",
        )
        gz = [a for a in arms if a["gzip"]]
        if gz:
            saving = 1 - 1 / max(a["compression_ratio"] for a in gz)
            add("gzip saving", f"{saving:.0%} smaller", "generated realistic logs, gzip level 6")
    insert = _db(db_data, "insert", 1000)
    if copy and insert:
        add("COPY vs INSERT", f"{copy['rows_per_s'] / insert['rows_per_s']:.1f}x faster", "db, batch 1000")
    insert_1 = _db(db_data, "insert", 1)
    if insert_1:
        add(
            "row-by-row INSERT",
            f"{_n(insert_1['rows_per_s'])} logs/s",
            "db `insert` batch 1 (one commit per log)",
        )
    return rows


def methods_table(db_data: dict[str, Any]) -> list[str]:
    rows = [
        "| batch | method | rows/s | vs COPY | p50 ms | p90 ms | p99 ms | batches |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in db_data["parameters"]["batch_sizes"]:
        copy = _db(db_data, "copy", batch)
        for result in (r for r in db_data["results"] if r["batch"] == batch and r["schema"] == "ours"):
            ratio = f"{result['rows_per_s'] / copy['rows_per_s']:.2f}" if copy else "–"
            rows.append(f"| {batch} | {result['method']} | {_n(result['rows_per_s'])} | {ratio} | {_ms(result['p50_ms'])} "
                        f"| {_ms(result['p90_ms'])} | {_ms(result['p99_ms'])} | {result['batches']} |")  # fmt: skip
    return rows


def schema_table(db_data: dict[str, Any]) -> list[str]:
    ours = _db(db_data, "copy", 1000)
    variants = [r for r in db_data["results"] if "queries" in r]
    if not (ours and variants):
        return []
    ours = next((r for r in variants if r["schema"] == "ours"), ours)
    names = [key.removesuffix(" p50_ms") for key in variants[0]["queries"] if key.endswith(" p50_ms")]
    rows = [
        "| schema | COPY rows/s (batch 1000) | vs ours | p99 ms | "
        + " | ".join(f"{n} p50 ms" for n in names)
        + " |",
        "|---|---:|---:|---:|" + "---:|" * len(names),
    ]
    for r in variants:
        q = r["queries"]
        rows.append(
            f"| {r['schema']} | {_n(r['rows_per_s'])} | {r['rows_per_s'] / ours['rows_per_s']:.2f} | {_ms(r['p99_ms'])} | "
            + " | ".join(_ms(q[f"{n} p50_ms"]) for n in names)
            + " |"
        )
    return rows


def _stolen(arm: dict[str, Any]) -> str:
    return f"{arm['steal_cpu']:.2f}" if "steal_cpu" in arm else "–"


def _per_log(arm: dict[str, Any]) -> str:
    """Server and PostgreSQL CPU µs per log (bench/cpu.py), and their ratio: the issue's yardstick."""
    server, postgres = arm.get("server_cpu_us_per_log"), arm.get("postgres_cpu_us_per_log")
    if server is None or postgres is None:
        return "– | – | –"
    return (
        f"{server:.1f} | {postgres:.1f} | {server / postgres:.2f}×" if postgres else f"{server:.1f} | 0 | –"
    )


def http_table(http_data: dict[str, Any]) -> list[str]:
    ceiling = _arm(http_data, "raw-copy-b1000-2conn")
    rows = [
        (
            "| arm | mode | workers | batch | gzip | clients | logs/s | of ceiling | req/s | p50 ms | p99 ms | wire MB/s "
            "| ratio | server RSS MB | server CPU | PG CPU | server µs/log | PG µs/log | server/PG | client CPU "
            "| stolen | statuses |"
        ),
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for a in http_data["results"]["arms"]:
        share = f"{a['logs_per_s'] / ceiling['rows_per_s']:.0%}" if ceiling else "–"
        statuses = ", ".join(f"{k}: {v}" for k, v in a["statuses"].items())
        rows.append(
            f"| `{a['arm']}` | {a['mode']} | {a.get('workers', 1)} | {a['batch']} | {'yes' if a['gzip'] else 'no'} | {a['clients']} "
            f"| {_n(a['logs_per_s'])} | {share} | {_n(a['requests_per_s'])} | {_ms(a['p50_ms'])} | {_ms(a['p99_ms'])} "
            f"| {a['wire_bytes_per_s'] / 1e6:.1f} | {a['compression_ratio']:.1f} | {a['server_peak_rss_mb']:.0f} "
            f"| {a['server_cpu']:.2f} | {a['postgres_cpu']:.2f} | {_per_log(a)} | {a['client_cpu']:.2f} "
            f"| {_stolen(a)} | {statuses} |"
        )
    rows += [
        "",
        "| raw COPY from the bench process | connections | rows/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in http_data["results"]["ceilings"]:
        rows.append(
            f"| `{c['arm']}` | {c['connections']} | {_n(c['rows_per_s'])} | {_ms(c['p50_ms'])} | {_ms(c['p99_ms'])} |"
        )
    return rows


def targets_table(http_data: dict[str, Any], profile_data: dict[str, Any] | None = None) -> list[str]:
    rows = ["| target | measured | met |", "|---|---|---|"]
    for arm in (profile_data or {}).get("results", {}).get("arms", []):
        # Round two's CPU targets, from the profile suite's run (one worker, the same loads).
        if arm["arm"] == "b1000-gzip-c8":
            value, goal, unit = arm["server_cpu_us_per_log"], 12, "per log"
        elif arm["arm"] == "b10-c32":
            value, goal, unit = arm["server_cpu_us_per_request"], 150, "per request"
        else:
            continue
        rows.append(f"| server CPU {unit} at `{arm['arm']}` ≤ {goal} µs (profile suite) | {value:.1f} µs | "
                    f"{'yes' if value <= goal else 'no'} |")  # fmt: skip
    # Round three's: the server's CPU per log against PostgreSQL's, both from /proc around the same load.
    big = _arm(http_data, "b1000-gzip-c8")
    if big and big.get("postgres_cpu_us_per_log"):
        ratio = big["server_cpu_us_per_log"] / big["postgres_cpu_us_per_log"]
        rows.append(f"| server CPU per log at `b1000-gzip-c8` ≤ {SERVER_PER_POSTGRES} × PostgreSQL's | {ratio:.2f} × "
                    f"({big['server_cpu_us_per_log']:.1f} vs {big['postgres_cpu_us_per_log']:.1f} µs) | "
                    f"{'yes' if ratio <= SERVER_PER_POSTGRES else 'no'} |")  # fmt: skip
    for kind, name, reference, goal in TARGETS:
        arm, ref = _arm(http_data, name), _arm(http_data, reference)
        if not (arm and ref):
            continue
        if kind == "latency":
            ratio = arm["p50_ms"] / ref["p50_ms"]
            rows.append(f"| `{name}` p50 ≤ {goal:.1f} × `{reference}` p50 | {ratio:.2f} × ({_ms(arm['p50_ms'])} vs "
                        f"{_ms(ref['p50_ms'])} ms) | {'yes' if ratio <= goal else 'no'} |")  # fmt: skip
            continue
        ratio = arm["logs_per_s"] / ref.get("logs_per_s", ref.get("rows_per_s"))
        rows.append(
            f"| `{name}` ≥ {goal:.2f} × `{reference}` | {ratio:.2f} × | {'yes' if ratio >= goal else 'no'} |"
        )
    # uvicorn's one worker: a Granian arm runs a process of its own beside its worker.
    single = [a for a in http_data["results"]["arms"]
              if a.get("workers", 1) == 1 and a.get("server", "uvicorn") == "uvicorn"]  # fmt: skip
    if single:
        peak = max(single, key=lambda a: a["server_peak_rss_mb"])
        rows.append(f"| server process peak RSS ≤ {MEMORY_MB} MB (one worker) | {peak['server_peak_rss_mb']:.0f} MB "
                    f"(`{peak['arm']}`) | {'yes' if peak['server_peak_rss_mb'] <= MEMORY_MB else 'no'} |")  # fmt: skip
    return rows


def _granian_ratios(http_data: dict[str, Any] | None) -> str:
    pairs = []
    for arm in (http_data or {}).get("results", {}).get("arms", []):
        base = (
            _arm(http_data or {}, arm["arm"].removesuffix("-granian"))
            if arm.get("server") == "granian"
            else None
        )
        if base:
            pairs.append(f"`{base['arm']}` {arm['logs_per_s'] / base['logs_per_s']:.2f} × uvicorn's logs/s")
    return f" ({', '.join(pairs)})" if pairs else ""


def keyed_table(http_data: dict[str, Any]) -> list[str]:
    rows = ["| load | logs/s without keys | logs/s with keys | ratio | p50 ms without / with | server CPU without / with |",
            "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for keyed in (arm for arm in http_data["results"]["arms"] if arm.get("keyed")):
        plain_name = keyed["arm"].removesuffix("-keyed")
        plain = _arm(http_data, plain_name)
        if plain:
            rows.append(
                f"| `{plain_name}` | {_n(plain['logs_per_s'])} | {_n(keyed['logs_per_s'])} | "
                f"{keyed['logs_per_s'] / plain['logs_per_s']:.2f}x | {_ms(plain['p50_ms'])} / {_ms(keyed['p50_ms'])} | "
                f"{plain['server_cpu']:.2f} / {keyed['server_cpu']:.2f} |"
            )
    return rows


def scale_table(scale_data: dict[str, Any]) -> list[str]:
    results = scale_data["results"]
    names = [key.removesuffix(" p50_ms") for key in results[0] if key.endswith(" p50_ms")]
    rows = ["| rows | /stats p50 ms | full count p50 ms | " + " | ".join(f"{n} p50 ms" for n in names) + " |",
            "|---:|---:|---:|" + "---:|" * len(names)]  # fmt: skip
    for result in results:
        rows.append(
            f"| {_n(result['rows'])} | {_ms(result['stats_p50_ms'])} | {_ms(result['full_count_p50_ms'])} | "
            + " | ".join(_ms(result[f"{n} p50_ms"]) for n in names)
            + " |"
        )
    if "ui_load_p50_ms" in results[-1]:
        rows += ["", "The web view (`/ui` in Debian's chromium, p50 of 5): first page on screen "
                 + ", ".join(f"{_ms(r['ui_load_p50_ms'])} ms at {_n(r['rows'])} rows" for r in results)
                 + "; a service + level filter applied "
                 + ", ".join(f"{_ms(r['ui_filter_p50_ms'])} ms" for r in results) + "."]  # fmt: skip
    if "facets_24h_p50_ms" in results[-1]:
        rows += ["", "Under the page (HTTP, p50): GET /logs's first page, GET /logs/facets for 24 h (summary; sampled), "
                 "and a log from its POST's answer to its GET /logs/stream event: "
                 + "; ".join(f"{_n(r['rows'])} rows: {_ms(r['first_page_p50_ms'])} ms, {_ms(r['facets_24h_p50_ms'])}"
                             f" / {_ms(r['facets_24h_sampled_p50_ms'])} ms, {_ms(r['stream_delivery_p50_ms'])} ms"
                             for r in results) + "."]  # fmt: skip
    if "wal_bytes_per_row" in results[-1]:
        last = results[-1]
        rows += ["", (f"Storage at {_n(last['rows'])} rows in {last['partitions']} daily partitions: "
                      f"{_n(last['table_bytes_per_row'])} bytes per log on disk (table and indexes), and ingest wrote "
                      f"{_n(last['wal_bytes_per_row'])} bytes of WAL per log (last fill step).")]  # fmt: skip
    return rows


def archive_section(archive_data: dict[str, Any]) -> list[str]:
    p = archive_data["parameters"]
    lines = ["## Cold storage: a closed day in PostgreSQL and as Parquet (archive suite)", "",
             (f"One day's partition filled by COPY with the generator's rows (a pool of {p['pool']:,} parsed logs "
              "cycled and re-timed over the day, a trace id per ten logs), VACUUM ANALYZEd; then `python -m app "
              "archive` in a child process (streamed in time order, zstd Parquet in row groups of "
              f"{p['row_group_rows']:,} each sorted by service, read back and verified, partition dropped). GET /logs through the app in "
              f"process, p50 of {p['query_runs']} runs, over the day hot and then archived. Targets: ≥ 10× fewer "
              "bytes per log, archived pages ≤ 3× the hot ones, the pass ≤ 200 MB RSS. The pool repeats every "
              f"{p['pool']:,} rows, which flatters Parquet's dictionaries somewhat at the larger sizes."), "",
             "| rows | PostgreSQL B/log | Parquet B/log | ratio | pass rows/s | pass peak RSS | newest page hot → archived | filtered page hot → archived |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in archive_data["results"]:
        newest = f"{_ms(r['hot newest page p50_ms'])} → {_ms(r['archived newest page p50_ms'])}"
        newest += f" ({r['archived newest page p50_ms'] / r['hot newest page p50_ms']:.1f}×)"
        filtered = f"{_ms(r['hot filtered page p50_ms'])} → {_ms(r['archived filtered page p50_ms'])}"
        filtered += f" ({r['archived filtered page p50_ms'] / r['hot filtered page p50_ms']:.1f}×)"
        lines.append(
            f"| {r['rows']:,} | {r['pg_bytes_per_log']:.0f} | {r['parquet_bytes_per_log']:.0f} | {r['ratio']:.1f}× "
            f"| {_n(r['export_rows_per_s'])} | {r['pass_peak_rss_mb']:.0f} MB | {newest} | {filtered} |"
        )
    results = archive_data["results"]
    bytes_ratio = min(r["ratio"] for r in results)
    page_ratio = max(
        r[f"archived {k} page p50_ms"] / r[f"hot {k} page p50_ms"]
        for r in results
        for k in ("newest", "filtered")
    )
    peak = max(r["pass_peak_rss_mb"] for r in results)
    lines += [
        "",
        (
            f"Read: Parquet holds a log in ≥ {bytes_ratio:.1f}× fewer bytes (target 10×); an archived page takes at "
            f"most {page_ratio:.1f}× the hot one (target 3×); the pass peaked at {peak:.0f} MB (target 200 MB), "
            "measured as its own (spawned from a small launcher: forked from the bench, Linux counted the "
            "bench's own memory as the child's peak: the 289–374 MB an earlier run reported). How the pages got there: the "
            "first layout sorted each day by service, so a newest page read the last row group of every "
            "service (ten here), through DuckDB, whose per-column cost per row group dominated (11–25× hot). "
            "Now row groups are slices of time (each sorted by service, created_at, id inside), a page reads "
            "them newest first with pyarrow and stops when no unread group can hold a newer match (with the "
            "generator's mix, the newest group of 5,000 rows holds either page), and the JSON is written in Python exactly as PostgreSQL "
            "would (no round trip). Groups of 2,500 rows were tried by hand: larger files, no faster page."
        ),
    ]
    return [*lines, ""]


def otlp_table(otlp_data: dict[str, Any]) -> list[str]:
    results = otlp_data["results"]["arms"]
    json_arm = next(r for r in results if r["arm"].startswith("json"))
    rows = ["| arm | logs/s | vs JSON | p50 ms | p99 ms | wire bytes/request | server CPU | server CPU µs/log | PG CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        rows.append(
            f"| `{r['arm']}` | {_n(r['logs_per_s'])} | {r['logs_per_s'] / json_arm['logs_per_s']:.2f} × | "
            f"{_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {_n(r['wire_bytes_per_request'])} | {r['server_cpu']:.2f} | "
            f"{r['server_cpu'] / r['logs_per_s'] * 1e6:.1f} | {r['postgres_cpu']:.2f} |"
        )
    return rows


def agents_table(agents_data: dict[str, Any]) -> list[str]:
    target = agents_data["parameters"]["target"]
    head = "| arm | logs/s | vs JSON | target met | logs/s per round | p50 ms | p99 ms | wire bytes/request | server CPU µs/log |"
    rows = [head, "|---|---:|---:|---|---|---:|---:|---:|---:|"]
    for r in agents_data["results"]["arms"]:
        if "skipped" in r:
            rows.append(f"| `{r['arm']}` | skipped: {r['skipped']} | | | | | | | |")
            continue
        met = "—" if r["arm"].startswith("json") else ("yes" if r["vs_json"] >= target else "**no**")
        rows.append(
            f"| `{r['arm']}` | {_n(r['logs_per_s'])} | {r['vs_json']:.2f} × | {met} | "
            f"{', '.join(_n(x) for x in r['rounds'])} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | "
            f"{_n(r['wire_bytes_per_request'])} | {r['server_cpu_us_per_log']:.1f} |"
        )
    return rows


BULK_ARM = "es bulk b1000-gzip-c8"
BULK_DOOR = "bulk ndjson b1000-gzip-c8"


def bulk_gap(agents_data: dict[str, Any], profile_data: dict[str, Any] | None) -> list[str]:
    """When bulk is below its target: the profile suite's bulk door beside POST /logs of the same size, layer
    by layer (µs of server CPU per log), and what the difference is made of."""
    arm = next((a for a in agents_data["results"]["arms"] if a["arm"] == BULK_ARM and "vs_json" in a), None)
    if arm is None or arm["vs_json"] >= agents_data["parameters"]["target"] or not profile_data:
        return []
    arms = {a["arm"]: a for a in profile_data["results"]["arms"]}
    door, reference = arms.get(BULK_DOOR), arms.get("b1000-gzip-c8")
    if door is None or reference is None:
        return []
    ours = {layer["layer"]: layer["us_per_log"] for layer in reference["layers"]}
    theirs = {layer["layer"]: layer["us_per_log"] for layer in door["layers"]}
    layers = sorted(ours.keys() | theirs.keys(), key=lambda name: theirs.get(name, 0) - ours.get(name, 0),
                    reverse=True)  # fmt: skip
    target = agents_data["parameters"]["target"]
    out = ["### What stands between bulk and its target", "",
           (f"Bulk is at {arm['vs_json']:.2f} × JSON here. With one worker, when the server is what limits both "
            f"arms, the ratio follows the server's CPU per log: {target} × needs bulk's at most "
            f"{1 / target:.2f} × JSON's. The profile suite's run (one worker, 8 clients, batch 1000, same bodies), "
            "µs of server CPU per log, layer by layer, the largest difference first:"), "",
           "| layer | `POST /logs` | `POST /_bulk` | difference |", "|---|---:|---:|---:|"]  # fmt: skip
    for name in layers:
        a, b = ours.get(name, 0.0), theirs.get(name, 0.0)
        out.append(f"| {name} | {a:.2f} | {b:.2f} | {b - a:+.2f} |")
    total_a, total_b = reference["server_cpu_us_per_log"], door["server_cpu_us_per_log"]
    out.append(f"| **all** | **{total_a:.2f}** | **{total_b:.2f}** | "
               f"**{total_b - total_a:+.2f}** ({total_b / total_a:.2f} ×) |")  # fmt: skip
    top = ", ".join(f"`{f['function']}` {f['share']:.1%}" for f in door["top_functions"][:8])
    out += ["", f"Busiest functions of the bulk door (self time): {top}.", "", BULK_GAP, ""]
    return out


BULK_GAP = (
    "Most of the difference is the parse layer. Our JSON is decoded by msgspec straight into structs "
    "of our schema, in C. A bulk body is read three times over: orjson decodes each ECS source into dicts "
    "(in C, but a dict per object: about 10 per document), then Python maps each document onto our columns "
    "(`bulk.entry`: a look-up, a type check and a deletion per field, and what is left becomes `metadata`), "
    "then msgspec validates the mapped entries as it validates JSON's. The route's own share is its "
    "bookkeeping per document (an item per action, each answered in order) and freeing each chunk's "
    "documents once their rows are built. Rows, the COPY and the writer cost what JSON's cost, and the "
    "garbage collector is no longer a large part of it (Also tried, below). What "
    "remains is Python work per field of every document: closing the gap needs the ECS mapping in C (a decoder "
    "that maps ECS names to our columns while it parses, and leaves the rest as `metadata` text), not "
    "more of the same changes."
)


def syslog_section(syslog_data: dict[str, Any]) -> list[str]:
    """The syslog suite (bench/syslog.py): TCP octet-counted RFC 5424 and RELP beside our JSON."""
    p, arms = syslog_data["parameters"], syslog_data["results"]["arms"]
    target = p["target"]
    rows = [("| arm | logs/s | vs JSON | target met | logs/s per round | server CPU µs/log | PostgreSQL CPU µs/log "
             "| bench clients' CPU (cores) |"), "|---|---:|---:|---|---|---:|---:|---:|"]  # fmt: skip
    for r in arms:
        met = "yes" if r["vs_json"] >= target else "**no**"
        if r["arm"].startswith("json"):
            met = "—"
        elif r["arm"].startswith("relp"):
            met = "(reported)"
        rows.append(
            f"| `{r['arm']}` | {_n(r['logs_per_s'])} | {r['vs_json']:.2f} × | {met} | "
            f"{', '.join(_n(x) for x in r['rounds'])} | {r['server_cpu_us_per_log']:.1f} | "
            f"{_maybe(r.get('postgres_cpu_us_per_log'), '.1f')} | {_maybe(r.get('client_cpu'), '.2f')} |"
        )
    return ["## Syslog beside our JSON (syslog suite)", "",
            (f"The same generated logs, {p['batch']} per batch, {p['clients']} clients, one server ({p['workers']} "
             f"worker), {p['warmup_s']} s warm-up then {p['duration_s']} s per arm: our JSON (gzip) to "
             "`POST /logs`; TCP octet-counted RFC 5424 (`SYSLOG_TCP_PORT`) with the other fields as structured "
             "data, and with a JSON MSG read like a `/logs` entry; RELP (`SYSLOG_RELP_PORT`), a window of "
             f"{p['relp_window']} unacknowledged messages per client, counted when acknowledged, i.e. committed. "
             "TCP has no acknowledgement: logs/s is the messages the server committed within the measured window (its "
             "counter, read at both ends while the clients keep writing); after each arm every message sent is "
             "checked stored. CPU per log is over the measured window. The arms "
             f"take turns for {p['rounds']} round(s): each figure is the median over the rounds, and vs JSON the "
             f"median of the ratios within each round. Target (issue 31): TCP octet-counted ≥ {target} × JSON; "
             "RELP reported."), "", *rows, ""]  # fmt: skip


def _maybe(value: float | None, spec: str) -> str:
    # Figures older results do not have.
    return "—" if value is None else format(value, spec)


def aws_section(aws_data: dict[str, Any]) -> list[str]:
    """The aws suite (bench/aws.py): the Lambda handler's events, and POST /firehose beside POST /logs."""
    p, r = aws_data["parameters"], aws_data["results"]
    handler = r["handler_ms_per_event"]
    base = handler["API Gateway POST /logs"]
    out = ["## CloudWatch Logs and Firehose (aws suite)", "",
           (f"`handler.handler` in one warm Lambda-like process, events of {p['events']:,} logs in turns, median ms "
            "per event (a subscription event is gzip'd CloudWatch Logs JSON; the API Gateway event posts the same "
            "logs as our JSON):"), "",
           "| event | ms per event | vs API Gateway |", "|---|---:|---:|"]  # fmt: skip
    out += [f"| {name} | {ms:.1f} | {ms / base:.2f} × |" for name, ms in handler.items()]
    out += ["", (f"`POST /firehose` against the real server (one worker), {p['clients']} clients, every request sent "
                 "once with a requestId of its own, gzip, beside `POST /logs` of the same logs:"), "",
            "| arm | logs/s | p50 ms | p99 ms | wire bytes/request | server CPU | statuses |",
            "|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    out += [f"| {a['arm']} | {_n(a['logs_per_s'])} | {_ms(a['p50_ms'])} | {_ms(a['p99_ms'])} | "
            f"{_n(a['wire_bytes_per_request'])} | {a['server_cpu']:.2f} | {a['statuses']} |" for a in r["firehose"]]  # fmt: skip
    return [*out, ""]


def profile_tables(profile_data: dict[str, Any]) -> list[str]:
    out: list[str] = []
    arms = profile_data["results"]["arms"]
    for arm in (a for a in arms if a.get("path", "/logs") == "/logs"):
        out += [(f"**`{arm['arm']}`**: {_n(arm['logs_per_s'])} logs/s, **{arm['server_cpu_us_per_log']:.1f} µs of "
                 f"server CPU per log**, {arm['server_cpu_us_per_request']:,.0f} µs per request"
                 f"{_postgres_per_log(arm)} ({arm['samples']:,} samples)."), "",
                "| layer | share | µs per log | µs per request |", "|---|---:|---:|---:|"]  # fmt: skip
        out += [f"| {layer['layer']} | {layer['share']:.1%} | {layer['us_per_log']:.2f} | {layer['us_per_request']:,.1f} |"
                for layer in arm["layers"]]  # fmt: skip
        top = ", ".join(f"`{f['function']}` {f['share']:.1%}" for f in arm["top_functions"][:10])
        out += ["", f"Busiest functions (self time): {top}.", ""]
    doors = [a for a in arms if a.get("path", "/logs") != "/logs"]
    return out + (front_doors_table(arms, doors) if doors else [])


def _postgres_per_log(arm: dict[str, Any]) -> str:
    """', PostgreSQL 10.5 µs per log (server/PG 1.05×)' when the arm has it (profile.json before round three
    does not)."""
    postgres = arm.get("postgres_cpu_us_per_log")
    if not postgres:
        return ""
    return (
        f", PostgreSQL {postgres:.1f} µs per log (server/PG {arm['server_cpu_us_per_log'] / postgres:.2f}×)"
    )


def _short(layer: str) -> str:
    """A layer's name without its explanation: 'COPY: asyncpg's …' -> 'COPY', 'parse, validate, …' -> 'parse'."""
    return re.split(r"[:(,]", layer)[0].strip()


def front_doors_table(arms: list[dict[str, Any]], doors: list[dict[str, Any]]) -> list[str]:
    """One row per front door beside POST /logs at the same batch, and each door's busiest functions."""
    reference = [a for a in arms if a["arm"] == "b1000-gzip-c8"]
    out = ["### Every front door, batch 1000", "",
           ("Each front door profiled the same way at batch 1000 from 8 clients, with the bodies of the agents, otlp "
            "and aws suites (`bench/profile.py` DOORS), beside `POST /logs` of the same size. The CloudWatch Logs "
            "subscription has no HTTP server: `handler.handler` in a Lambda-like process (one COPY per event, "
            "asyncio's own loop), events of 1000 JSON lines one after another, its CPU per log read from that "
            "process. Layers: the three largest, µs of server CPU per log."), "",
           "| arm | route | logs/s | server µs/log | PG µs/log | server/PG | top layers (µs/log) |",
           "|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for arm in [*reference, *doors]:
        path = arm.get("path", "/logs")
        route = f"`POST {path}`" if path.startswith("/") else f"`{path}`"
        layers = ", ".join(
            f"{_short(layer['layer'])} {layer['us_per_log']:.1f}" for layer in arm["layers"][:3]
        )
        out.append(f"| `{arm['arm']}` | {route} | {_n(arm['logs_per_s'])} | {_per_log(arm)} | {layers} |")
    out += ["", "Busiest functions (self time) per front door:", ""]
    for arm in doors:
        top = ", ".join(f"`{f['function']}` {f['share']:.1%}" for f in arm["top_functions"][:6])
        out.append(f"- `{arm['arm']}`: {top}.")
    return [*out, ""]


def lone_table(profile_data: dict[str, Any]) -> list[str]:
    lone = profile_data["results"].get("lone_batch")
    if not lone:
        return []
    p50 = lone["p50_ms"]
    raw = p50["raw COPY in a transaction"]
    out = ["### A lone batch of 1000, step by step", "",
           (f"The server's steps for one batch, one after another in one process against the same database, wall "
            f"time p50 of {lone['runs']} batches (`bench/lone.py`), beside a raw COPY of the same rows in a "
            "transaction. Target: a lone batch ≤ 1.3 × the raw COPY."), "",
           "| step | ms (p50) | × raw COPY |", "|---|---:|---:|"]  # fmt: skip
    out += [f"| {name} | {value:.2f} | {value / raw:.2f} |" for name, value in p50.items()
            if name not in ("whole", "stream")]  # fmt: skip
    out += [f"| **parse, then `writer.commit`** (a lone batch before round two) | {p50['whole']:.2f} | {p50['whole'] / raw:.2f} |",
            (f"| **`writer.stream`** (rows built while the chunk before them is written; what the server does now) | "
             f"{p50['stream']:.2f} | {p50['stream'] / raw:.2f} |"), ""]  # fmt: skip
    return out


def otlp_floor(otlp_data: dict[str, Any]) -> list[str]:
    stages = {s["stage"]: s["ms_per_batch"] for s in otlp_data["results"]["stages"]}
    json_ms = next(iter(stages.values()))
    floor = next(v for k, v in stages.items() if "nothing kept" in k)
    whole = next(v for k, v in stages.items() if "whole parse" in k)
    return [(f"Reading each attribute's key and kind through upb (the protobuf runtime), with nothing converted "
             f"or kept, already costs {floor:.2f} ms per batch, {floor / json_ms:.1f} × JSON's whole parse "
             f"(msgspec decodes JSON into structs in C; upb hands Python one wrapper object per attribute and per "
             f"value). The whole OTLP parse is {whole / json_ms:.1f} × JSON's. Without a compiled decoder that "
             "builds our rows from the wire format, OTLP stays below 0.8 × at this record shape "
             "(about 10 attributes and 2 nested maps per record).")]  # fmt: skip


def otlp_stages_table(otlp_data: dict[str, Any]) -> list[str]:
    stages = otlp_data["results"]["stages"]
    json_ms = stages[0]["ms_per_batch"]
    repeats = otlp_data["parameters"].get("stage_repeats", 15)
    rows = [
        f"| step (one process, best of {repeats} passes) | ms per batch | vs JSON's whole parse |",
        "|---|---:|---:|",
    ]
    rows += [
        f"| {s['stage']} | {s['ms_per_batch']:.2f} | {s['ms_per_batch'] / json_ms:.2f} × |" for s in stages
    ]
    return rows


def client_table(client_data: dict[str, Any]) -> list[str]:
    r = client_data["results"]
    busy, down, handler, through = r["log_busy"], r["log_server_down"], r["handler"], r["throughput"]
    return [
        "| measure | p50 | p99 | target |",
        "|---|---:|---:|---|",
        f"| `client.log()`, sender busy | {busy['p50_us']:.2f} µs | {busy['p99_us']:.2f} µs | ≤ 5 / ≤ 50 µs (seed: < 100 µs) |",
        f"| `client.log()`, server down | {down['p50_us']:.2f} µs | {down['p99_us']:.2f} µs | the same |",
        f"| `logger.info()` with LogSaveHandler | {handler['logger_info_p50_us']:.2f} µs | {handler['logger_info_p99_us']:.2f} µs | |",
        f"| the handler's share of it (minus a NullHandler's call) | {handler['handler_share_p50_us']:.2f} µs | | ≤ 5 µs |",
        "",
        (
            f"One process, one client: {through['logs']:,} logs acknowledged in {through['seconds']:.2f} s = "
            f"**{_n(through['logs_per_s'])} logs/s** (target ≥ 50,000); stored after close: {through['stored']:,} "
            f"(lost: {through['lost']}); retries {through['retries']}, dropped {through['dropped']}."
        ),
    ]


def limits_table(limits_data: dict[str, Any]) -> list[str]:
    rows = ["| body | bytes | encoding | CPU s | outcome |", "|---|---:|---|---:|---|"]
    for result in limits_data["results"]:
        rows.append(
            f"| {result['body']} | {_n(result['bytes'])} | {result['encoding']} | {result['cpu_s']:.3f} | "
            f"{result['outcome']} |"
        )
    return rows


def steps_table(steps_data: dict[str, Any]) -> list[str]:
    rows = [("| server at commit | `b10-c32` logs/s | group ÷ direct (b10, 32 clients) | `b1000-gzip-c8` logs/s "
            "| of ceiling | server µs/log (b1000 gzip) | server ÷ PostgreSQL per log | `b1000-c1` p50 ÷ raw COPY p50 "
            "| rounds |"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for step in steps_data["results"]:
        measures: dict[str, list[float]] = {"group": [], "ratio": [], "big": [], "share": [], "latency": [],
                                            "server": [], "server_pg": []}  # fmt: skip
        for run in step["runs"]:
            group, direct = _find(run, "b10-c32"), _find(run, "b10-c32-direct")
            big, single = _find(run, "b1000-gzip-c8"), _find(run, "b1000-c1")
            ceiling, raw = _find(run, "raw-copy-b1000-2conn"), _find(run, "raw-copy-b1000-1conn")
            if not (group and direct and big and single and ceiling and raw):
                continue
            measures["group"].append(group["logs_per_s"])
            measures["ratio"].append(group["logs_per_s"] / direct["logs_per_s"])
            measures["big"].append(big["logs_per_s"])
            measures["share"].append(big["logs_per_s"] / ceiling["rows_per_s"])
            measures["latency"].append(single["p50_ms"] / raw["p50_ms"])
            if big.get("postgres_cpu_us_per_log"):  # runs since round three's accounting
                measures["server"].append(big["server_cpu_us_per_log"])
                measures["server_pg"].append(big["server_cpu_us_per_log"] / big["postgres_cpu_us_per_log"])
        if not measures["group"]:
            continue
        m = {key: statistics.median(values) if values else None for key, values in measures.items()}
        cpu = f"{m['server']:.1f} | {m['server_pg']:.2f} ×" if m["server"] is not None else "– | –"
        rows.append(f"| `{step['revision']}` {step['subject'].split(':')[0]} | {_n(m['group'])} | {m['ratio']:.2f} × "
                    f"| {_n(m['big'])} | {m['share']:.0%} | {cpu} | {m['latency']:.2f} × | {len(measures['group'])} |")  # fmt: skip
    return rows


def findings(http_data: dict[str, Any]) -> list[str]:
    """Why a target is or is not met, worked out from the same figures."""
    lines = []
    big, ceiling = _arm(http_data, "b1000-gzip-c8-w2"), _arm(http_data, "raw-copy-b1000-2conn")
    if big and ceiling:
        server_us = big["server_cpu"] / big["logs_per_s"] * 1e6
        pg_us = big["postgres_cpu"] / big["logs_per_s"] * 1e6
        goal = 0.8 * ceiling["rows_per_s"]
        budget = (2.0 - big["client_cpu"]) / goal * 1e6 - pg_us
        used = big["server_cpu"] + big["postgres_cpu"] + big["client_cpu"]
        stolen = big.get("steal_cpu", 0.0)
        limit = (
            "the box, not a lock or a queue, was the limit"
            if used + stolen >= 1.85
            else f"{2 - used - stolen:.2f} cores stayed idle, so this arm waited on something other than CPU"
        )
        lines.append(
            f"- **Ceiling.** In `{big['arm']}` the server, PostgreSQL and the load generator kept {used:.2f} of the "
            f"2 cores busy and the hypervisor took {stolen:.2f}: {limit}. The server spent {server_us:.1f} µs of "
            f"CPU per log and PostgreSQL {pg_us:.1f} µs; at 0.8 × the ceiling ({_n(goal)} logs/s) PostgreSQL's "
            f"share would leave the server {budget:.1f} µs per log. The raw ceiling is COPY from a process that "
            "only encodes rows, so PostgreSQL gets nearly a core of its own; the server also receives, "
            "decompresses and validates every log."
        )
    group, direct = _arm(http_data, "b10-c32"), _arm(http_data, "b10-c32-direct")
    if group and direct:
        group_us = group["server_cpu"] / group["requests_per_s"] * 1e6
        direct_us = direct["server_cpu"] / direct["requests_per_s"] * 1e6
        lines.append(
            f"- **Coalescing.** Per request of 10 logs the server spent {group_us:.0f} µs of CPU with group commit and "
            f"{direct_us:.0f} µs with one COPY per request (server CPU {group['server_cpu']:.2f} and "
            f"{direct['server_cpu']:.2f} cores; the hypervisor took {group.get('steal_cpu', 0.0):.2f} and "
            f"{direct.get('steal_cpu', 0.0):.2f}). One worker can at best run {direct_us / group_us:.1f} × as many "
            "requests with group commit as without: coalescing removes the COPY transaction from each request, "
            "but what every request still pays (HTTP parsing, the ASGI stack, decoding, validation) is what "
            "stands between that and 3 ×."
        )
    single, raw = _arm(http_data, "b1000-c1"), _arm(http_data, "raw-copy-b1000-1conn")
    if single and raw:
        lines.append(
            f"- **Latency.** A lone batch of 1000 took {_ms(single['p50_ms'])} ms through the server against "
            f"{_ms(raw['p50_ms'])} ms for the same rows COPYed directly: the server adds "
            f"{single['p50_ms'] - raw['p50_ms']:.1f} ms to receive, decode and validate 1000 logs, and its summary "
            'upsert, around a COPY it now overlaps with building the rows ("A lone batch of 1000, step by step" '
            "below shows each step)."
        )
    return lines


def server_against_postgres(http_data: dict[str, Any], profile_data: dict[str, Any] | None) -> list[str]:
    """Round three's question: what the server's CPU per log is made of, against PostgreSQL's."""
    big = _arm(http_data, "b1000-gzip-c8")
    if not (big and big.get("postgres_cpu_us_per_log")):
        return []
    server, postgres = big["server_cpu_us_per_log"], big["postgres_cpu_us_per_log"]
    line = (f"- **Server against PostgreSQL.** At `b1000-gzip-c8` the server spent {server:.1f} µs of CPU per log and "
            f"PostgreSQL {postgres:.1f} µs ({server / postgres:.2f} ×; target {SERVER_PER_POSTGRES} ×, i.e. "
            f"{postgres * SERVER_PER_POSTGRES:.1f} µs).")  # fmt: skip
    arm = next(
        (a for a in (profile_data or {}).get("results", {}).get("arms", []) if a["arm"] == big["arm"]), None
    )
    if arm:
        layers = {layer["layer"]: layer["us_per_log"] for layer in arm["layers"]}
        parse = layers.get("parse, validate, build rows", 0.0)
        copy = layers.get("COPY: asyncpg's encoding and protocol", 0.0)
        rest = arm["server_cpu_us_per_log"] - parse - copy
        goal = postgres * SERVER_PER_POSTGRES
        line += (f" In the profile suite's run of the same load ({arm['server_cpu_us_per_log']:.1f} µs per log), parsing "
                 f"and validating took {parse:.1f} µs, asyncpg's COPY encoding {copy:.1f} µs and everything else "
                 f"(HTTP, inflate, event loop, writer) {rest:.1f} µs. With everything else as it is, the target "
                 f"leaves parse and COPY encoding {max(goal - rest, 0.0):.1f} µs together, "
                 f"{1 - max(goal - rest, 0.0) / (parse + copy):.0%} less than now: C-level work per log (a "
                 "validating decoder that writes COPY's binary rows itself), not more of this round's Python "
                 "changes.")  # fmt: skip
    return [line]


def environment_lines(meta: dict[str, Any]) -> list[str]:
    libs = ", ".join(f"{k} {v}" for k, v in meta["libraries"].items() if v)
    pg = meta["postgres"]
    settings = ", ".join(f"{k}={v}" for k, v in pg["settings"].items())
    return [
        (
            f"- Measured {meta['date']} at commit `{meta.get('commit')}` on {meta['cpu']}, {meta['cores']} cores, "
            f"{meta['memory_gib']} GiB, {meta['os']}."
        ),
        f"- Python {meta['python']}; {libs}.",
        f"- PostgreSQL {pg['version']} ({meta['database']}); {settings}.",
        "- "
        + ("**Quick run** (smoke test: durations too short to quote)." if meta.get("quick") else "Full run."),
    ]


def markdown(db_data: dict[str, Any] | None, http_data: dict[str, Any] | None,
             steps_data: dict[str, Any] | None = None, limits_data: dict[str, Any] | None = None,
             scale_data: dict[str, Any] | None = None, client_data: dict[str, Any] | None = None,
             otlp_data: dict[str, Any] | None = None, profile_data: dict[str, Any] | None = None,
             coldstart_data: dict[str, Any] | None = None, aws_data: dict[str, Any] | None = None,
             agents_data: dict[str, Any] | None = None, archive_data: dict[str, Any] | None = None) -> str:  # fmt: skip
    meta = (db_data or http_data or {})["meta"]
    out = ["# log-save-server: measured", "",
           ("Generated by `python -m bench` from `db.json` and `http.json` beside this file; every figure below comes "
           "from those files. Re-render with `python -m bench report`."), ""]  # fmt: skip
    out += ["## Where", "", *environment_lines(meta), ""]
    out += ["## The product description's claims, measured", "", *claims_table(db_data, http_data), ""]
    if http_data:
        out += ["## Throughput targets (ratios within this run)", "", *targets_table(http_data, profile_data), "",
                *findings(http_data), *server_against_postgres(http_data, profile_data), ""]  # fmt: skip
    if profile_data:
        p = profile_data["parameters"]
        out += ["## Where the server's CPU goes (profile suite)", "",
                (f"One worker under each load for {p['duration_s']} s after {p['warmup_s']} s of warm-up, sampled by "
                 f"py-spy at {p['rate_hz']} Hz (idle time left out). Each sample is charged to the deepest frame of a "
                 "known layer (`bench/profile.py` LAYERS: C code counts for the Python frame that called it, so "
                 "msgspec is the parse and zlib is inflate); with the worker's CPU seconds over the same interval, a "
                 "layer's share becomes µs of server CPU per log and per request. Targets: ≤ 12 µs per log at batch "
                 "1000 gzip, ≤ 150 µs per request at batch 10."), "",
                *profile_tables(profile_data), *lone_table(profile_data), ""]  # fmt: skip
    if db_data:
        p = db_data["parameters"]
        out += ["## Write methods (db suite)", "",
                (f"One connection, one transaction per batch, {p['warmup_s']} s warm-up then {p['duration_s']} s "
                f"measured per arm, table truncated between arms, row count checked after each. "
                f"Rows from the seeded generator (seed {p['seed']}), built by the server's own `app.intake.rows.parse`."), "",
                *methods_table(db_data), "",
                "### Schema choices",
                "",
                ("COPY at batch 1000 with one choice changed from ours (`logs` partitioned by day; primary key "
                "(created_at, id), BRIN on created_at, a partial btree on trace_id; metadata as JSONB), measured like "
                "the arms above; then the queries each choice is for, on the same table refilled to exactly the same "
                "number of rows and ANALYZEd. Every query skips soft-deleted rows (`AND NOT deleted`)."),
                "",
                *schema_table(db_data), "",
                "![rows/s by batch size](db_throughput.png)", "", "![latency per batch](db_latency.png)", ""]  # fmt: skip
    if http_data:
        p = http_data["parameters"]
        out += ["## The server end to end (http suite)", "",
                (f"`python -m app` on 127.0.0.1 (`WEB_CONCURRENCY` workers: 1 unless the arm says w2; its RSS "
                "and CPU then add up the parent and both workers), closed-loop clients with keep-alive, "
                f"{p['warmup_s']} s warm-up then {p['duration_s']} s measured per arm; after each arm the table held "
                "exactly the logs the server acknowledged. CPU columns are cores busy (1.00 = one core) for the server, "
                "PostgreSQL's processes and the load generator. \"of ceiling\" divides by raw COPY with 2 connections."), "",
                *http_table(http_data), "", "![HTTP throughput](http_throughput.png)", ""]  # fmt: skip
    if http_data and any(arm.get("keyed") for arm in http_data["results"]["arms"]):
        out += ["## What exactly-once costs (same run)", "",
                ("The same load with and without an `Idempotency-Key` on every request (each key new, so every "
                "request is stored). With a key the server also claims it in the COPY's transaction "
                "(`INSERT ... ON CONFLICT` into `idempotency_keys`)."), "",
                *keyed_table(http_data), ""]  # fmt: skip
    if limits_data:
        p = limits_data["parameters"]
        out += ["## The most expensive bodies (limits suite)", "",
                (f"Bodies built to cost the server as much as possible within MAX_BODY_BYTES ({p['max_body_bytes']} "
                f"bytes) and the other documented limits, decoded and validated into rows by the server's own code; "
                f"the slowest of {p['repeats']} runs, in CPU seconds of one core."), "",
                *limits_table(limits_data), ""]  # fmt: skip
    if scale_data:
        p = scale_data["parameters"]
        out += ["## Scale: /stats and GET /logs as the table grows (scale suite)", "",
                (f"The table filled through the server's own writer (partitions on demand, COPY, the /stats summary "
                f"in the same transaction) in batches of {p['batch']:,}, with realistic rows spread evenly over the "
                f"last {p['days']} days of the final size, then VACUUM ANALYZE; p50 of {p['query_runs']} runs "
                f"({p['count_runs']} for the full count). \"/stats\" reads the summary; \"full count\" is the one-pass "
                "GROUP BY that /stats used to run. The page queries are GET /logs's own SQL (`app.query`)."), "",
                *scale_table(scale_data), ""]  # fmt: skip
    if archive_data:
        out += archive_section(archive_data)
    if otlp_data:
        p = otlp_data["parameters"]
        out += ["## OTLP beside our JSON (otlp suite)", "",
                (f"The same generated logs, batches of {p['batch']}, gzip, {p['clients']} clients, one server "
                f"({p.get('workers', 1)} worker, so that the server is what limits both arms), "
                f"{p['warmup_s']} s warm-up then {p['duration_s']} s per arm: as OTLP protobuf to `POST /v1/logs` and "
                "as our JSON to `POST /logs`. Target: OTLP ≥ 0.8 × JSON."), "",
                *otlp_table(otlp_data), "",
                ("Where an OTLP record's extra cost goes: each step of the two parses, timed in one process on the "
                 "same four batches (`bench/otlp.py` `stages`):"), "",
                *otlp_stages_table(otlp_data), "", *otlp_floor(otlp_data), ""]  # fmt: skip
    if agents_data:
        p = agents_data["parameters"]
        out += ["## The agents' formats beside our JSON (agents suite)", "",
                (f"The same generated logs, batches of {p['batch']}, {p['clients']} clients, one server "
                 f"({p['workers']} worker), {p['warmup_s']} s warm-up then {p['duration_s']} s per arm: our JSON "
                 "(gzip) to `POST /logs`; Loki protobuf+snappy to `POST /loki/api/v1/push` as Promtail sends it "
                 "(a stream per service, level and environment, each line the rest of the log as JSON; each "
                 "request with an Idempotency-Key of its own, claimed like the body key an agent's push gets); "
                 "Elasticsearch bulk (gzip NDJSON, `{\"create\":{}}` + an ECS document per log) to `POST /_bulk`, acknowledged only "
                 f"when answered `\"errors\": false`. The arms take turns for {p.get('rounds', 1)} round(s): each "
                 "figure is the median over the rounds, and vs JSON the median of the ratios within each round. "
                 f"Target: each ≥ {p['target']} × JSON."), "",
                *agents_table(agents_data), "", *bulk_gap(agents_data, profile_data)]  # fmt: skip
    if client_data:
        p = client_data["parameters"]
        out += ["## The Python client (client suite)", "",
                (f"`logsave.LogClient.log()` and `logger.info()` through `LogSaveHandler`, each call timed "
                f"({p['calls']:,} calls), against the real server (`python -m app`, one worker) and with the server "
                f"down; then one process sending {p['throughput_logs']:,} logs through one client to the real server. "
                "The product description claims \"app blocking < 0.1 ms per log call\"."), "",
                *client_table(client_data), ""]  # fmt: skip
    if coldstart_data:
        r = coldstart_data["results"]
        out += ["## Lambda cold start (coldstart suite)", "",
                (f"Fresh interpreters, as new Lambda containers: `import handler` (which builds the app), then "
                 f"`handler.handler` called twice with an API Gateway HTTP API event posting a batch (the first call "
                 f"opens the database pool). Medians of {r['runs']} runs, bytecode not written "
                 "(`PYTHONDONTWRITEBYTECODE=1`, as Lambda's read-only package directory)."), "",
                "| measure | ms (p50) |", "|---|---:|",
                f"| `import handler` | {r['import_handler_ms']:.0f} |",
                f"| of which FastAPI's own import (`import fastapi` alone) | {r['import_fastapi_ms']:.0f} |",
                f"| first invocation (pool opened, batch committed) | {r['first_invocation_ms']:.1f} |",
                f"| second invocation (warm) | {r['warm_invocation_ms']:.1f} |", "",
                f"Statuses answered: {', '.join(map(str, r['statuses']))}.", ""]  # fmt: skip
    if aws_data:
        out += aws_section(aws_data)
    if steps_data:
        p = steps_data["parameters"]
        out += ["## What each step bought", "",
                ("The server as it was at each commit, under the same load (`python -m bench steps REV...`: one "
                f"worker, {p['warmup_s']} s warm-up, {p['duration_s']} s per arm). The commits took turns, round "
                "after round, and each figure is the median over the rounds; shares of the ceiling and latency "
                "ratios are taken within a run first. The subject is the commit's, cut at its colon."), "",
                *steps_table(steps_data), ""]  # fmt: skip
    out += ["## Also tried", "", ALSO_TRIED.format(granian=_granian_ratios(http_data)), ""]
    out += ["## What these numbers do and don't show", "", HONEST, ""]
    return "\n".join(out)


ALSO_TRIED = (
    "- Two uvicorn workers (`WEB_CONCURRENCY=2`): the `-w2` arms above. Since round two this is the default: "
    "`WEB_CONCURRENCY` unset means one worker per CPU the process may use, with the pool per worker shrunk "
    "past 4 workers so that one server stays under PostgreSQL's default `max_connections`.\n"
    "- Granian (a Rust HTTP server) in place of uvicorn + httptools, serving the same app factory on uvloop: "
    "the `-granian` arms above{granian}. Not adopted: it did not win clearly over uvicorn here or in the runs "
    "while it was tried, and uvicorn's drain on SIGTERM, header timeout (app/protocol.py) and "
    "`limit_concurrency` are what the fault and abuse tests prove.\n"
    "- Streaming a lone batch into COPY (`app/intake/writer.py` `stream`): rows built 250 at a time while PostgreSQL "
    "writes the chunk before (asyncpg's own async-iterable COPY buffers 512 KB before it sends anything, more "
    'than a batch of 1000, so the chunks are separate COPYs of one transaction). Kept: see "A lone batch of '
    '1000, step by step" (the two paths, same run); the HTTP steps are too noisy here to separate them. With '
    "PostgreSQL on the same two cores, its COPY "
    "slows down while Python builds the next chunk beside it, so the overlap buys less than the parse costs.\n"
    "- The garbage collector (`app/heap.py`): start-up frozen out of collections and a young-generation "
    "threshold of 10,000 instead of 700. A batch of 1000 allocates tens of thousands of containers, and the "
    "default threshold collected dozens of times per batch while other batches' rows were alive.\n"
    "- Elasticsearch bulk, toward its 0.7 × target: an earlier profile put the garbage collector at about "
    "23% of the bulk handler; counted with `gc.callbacks` in a server under the agents load it was 6-9% of "
    "the worker's CPU. Start-up was already frozen out of collections (`app/heap.py` `settle`, "
    "`gc.freeze()` once the app is built). What kept the collector busy was the request itself: every "
    "document's dicts (about 10 per ECS source, plus the mapped entry and its validated struct) alive until "
    "the last one was validated. Now documents are read, mapped and validated 250 at a time "
    "(`bulk.chunks`), with one time received for the request. Counted with `gc.callbacks` in a server "
    "under the agents load: young-generation collections per bulk request fell from about 0.5 to 0.03-0.14, "
    "and the collector's share of bulk's CPU from 6-9% to 2-6% (JSON's: 10-13%). With it: the "
    "answer's items written from a head per index instead of two dicts per document, the one-field ECS "
    "objects read without a call, an index checked once per request, an RFC 3339 `@timestamp` parsed "
    "without two calls, a request without `_id`s answered with no document ids to claim. Streaming bulk's rows into the COPY as `POST /logs` does (`writer.stream`) was "
    "not done: a document's `_id` may be claimed only once every document of the request is validated "
    "(a refused document claims nothing, and of two with one id the first valid one wins), so with ids "
    "the rows cannot be written before the last chunk is read; without ids the overlap only helps a "
    'batch written alone, not the 8 clients here (what "Streaming a lone batch" above found for JSON).\n'
    "- OTLP: a hand-written pure-Python protobuf wire decoder in place of upb's objects was no faster; "
    "records as tuples, the resource and scope mapped once per scope, and msgspec validating the mapped "
    "values without a JSON round trip were kept (the OTLP section above shows what remains).\n"
    "- Keeping `metadata` as the raw JSON slice (msgspec.Raw) instead of parsing and re-serialising it: cheaper "
    "in the micro-benchmarks, but a number beyond the float range would then be stored where the documented "
    "schema refuses it, and the two validation passes would disagree. Not adopted. Tried again in round three "
    "keeping the stored text exactly as today (whitespace, escapes, number spellings): the checks that needs "
    "on the text in Python made the parse slower than decoding and re-encoding. Reverted.\n"
    "- Round three, per log: one dict lookup per enum value, durations packed straight into numeric's binary "
    "form, a large body's brackets counted in one pass (the steps table's `d2308d4`, `f8f0fa9`, `da86e92`). "
    "Per request (batch 10), in the last step: a response's head and body in one write, one header timer "
    "per connection instead of one per request, the request log's JSON encoder built once, the group "
    "commit's future awaited without a shield, no query string parsed when there is none. The bench's "
    "servers log at WARNING, so the request log line's own saving (production logs at INFO) is not in these "
    "figures. Turning off logging's caller/thread/process lookups (the formatter never writes them) was "
    "reverted: they are process-wide, and other handlers in the process (OpenTelemetry's, ecs-logging's) "
    "read them.\n"
    "- Skipping asyncpg's reset query when a writer connection goes back to the pool after a commit: one "
    "round trip less per group, but a connection killed at that moment then failed differently (a fault "
    "test caught it). Reverted.\n"
    "- Schema choices (the table in the db suite): the seed's four partial btrees, a btree on trace_id, and "
    "metadata as JSON instead of JSONB, each against ours. Kept: primary key + BRIN, JSONB. A trace_id btree "
    "buys fast trace lookups at an ingest cost; it is the first index to add, in a migration of its own, "
    "when looking logs up by trace matters more than ingest speed.\n"
    "- The search index (issue 29), as a tantivy index per closed day (`tantivy` 0.27 from PyPI, a text field "
    "of message and metadata strings, the id as a fast field), measured by hand on one day of 333,719 rows of "
    "the search suite's corpus: 14.5 µs of CPU per log to build and 84.4 B per log (five times the block "
    "filters' 17.3 B), a term query in 0.01 ms. Not kept: it covers closed days only (the open day and every "
    "late row would still need the block filters or a scan), it lives in files every instance and the Lambda "
    "would have to share, it has the same word-against-substring limits, and its bytes stay for "
    "RETENTION_DAYS. Kept: bloom filters per block of rows in PostgreSQL, written in each COPY's transaction "
    "(the search suite above; docs/search.md)."
)

HONEST = (
    "Everything ran on one shared 2-core virtual machine: the server, PostgreSQL and the load generator "
    "compete for the same two cores, so the HTTP figures are what the whole box does, not what the server "
    "would do with PostgreSQL on another host (the seed's setup: EC2 + a database in the same VPC). The "
    "CPU columns show where the cores went; when server + PostgreSQL + client CPU add up to about 2.0 the "
    "machine, not any one part, is the limit. The machine is shared and noisy, so compare rows within one "
    "run (the ratios), not with another run or another machine. PostgreSQL ran with its defaults "
    "(synchronous_commit on, fsync on): every 200 is durable, and commit latency (fsync on this VM's disk) "
    "is part of every figure. The table starts empty in every arm, so these are the speeds of a small table; "
    "a table of billions of rows with more indexes would ingest slower. The seed's 19,231 logs/s was a "
    "client-side enqueue loop, never a server measurement; the table above sets server measurements beside it."
)


# --- plots --------------------------------------------------------------------------------------------


def plot_db_throughput(db_data: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(r["method"] for r in db_data["results"]):
        points = [(r["batch"], r["rows_per_s"]) for r in db_data["results"]
                  if r["method"] == method and r["schema"] == "ours"]  # fmt: skip
        ax.plot(*zip(*points), marker="o", label=method)
    ax.set(xscale="log", yscale="log", xlabel="batch size (rows per transaction)", ylabel="rows/s",
           title="Write methods: throughput by batch size")  # fmt: skip
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_db_latency(db_data: dict[str, Any], path: Path) -> Path:
    methods = list(dict.fromkeys(r["method"] for r in db_data["results"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 4), sharey=True)
    for ax, method in zip(axes, methods):
        results = [r for r in db_data["results"] if r["method"] == method and r["schema"] == "ours"]
        batches = [r["batch"] for r in results]
        for q, style in (("p50_ms", "o-"), ("p90_ms", "s--"), ("p99_ms", "^:")):
            ax.plot(batches, [r[q] for r in results], style, label=q.split("_")[0])
        ax.set(xscale="log", yscale="log", title=method, xlabel="batch size")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms per batch")
    axes[0].legend()
    fig.suptitle("Latency per batch (commit included)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_http(http_data: dict[str, Any], path: Path) -> Path:
    """Plain vs gzip at each batch size, one worker and 8 clients (the like-for-like arms), and the ceiling."""
    arms = {(a["batch"], a["gzip"]): a for a in http_data["results"]["arms"]
            if a["mode"] == "group" and a.get("workers", 1) == 1 and a["clients"] == 8}  # fmt: skip
    batches = sorted({batch for batch, _ in arms})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.38
    for offset, gzip in ((-width / 2, False), (width / 2, True)):
        values = [arms[(b, gzip)]["logs_per_s"] if (b, gzip) in arms else 0 for b in batches]
        ax.bar(
            [i + offset for i in range(len(batches))], values, width, label="gzip" if gzip else "plain JSON"
        )
    ceiling = _arm(http_data, "raw-copy-b1000-2conn")
    if ceiling:
        ax.axhline(
            ceiling["rows_per_s"],
            color="black",
            linestyle="--",
            linewidth=1,
            label="raw COPY ceiling (2 conns)",
        )
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set(ylabel="logs/s acknowledged", title="Server end to end: 1 worker, 8 clients, group commit")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def alerts_section(data: dict[str, Any]) -> list[str]:
    """The alerts suite: evaluation time at N rows with the query plans, and ingest with evaluation running."""
    p, r = data["parameters"], data["results"]
    e, i = r["evaluation"], r["ingest"]
    evaluated = ", ".join(
        str(a["rules_evaluated_during_the_arm"]) for a in i["arms"] if a["alert_interval_s"] == 1
    )
    out = ["## Alerts: evaluating rules, and ingest meanwhile (alerts suite)", "",
           (f"{p['rules']} rules (service + level, min_level, text search, metadata, everything; windows of 1 to 60 "
            f"minutes) evaluated by the server's own pass (`app.alerts.evaluate.run_once`) against {r['rows']:,} "
            f"rows spread over the last days, {p['passes']} passes; thresholds out of reach, so the cost is the "
            "counting. Then ingest (one worker, "
            f"{p['clients']} clients, batches of {p['batch']}, {p['warmup_s']} s warm-up + {p['duration_s']} s) with "
            f"ALERT_INTERVAL a day vs 1 s (the next pass a second after the last one ended: evaluation almost "
            "non-stop, against 60 s by default; under load a pass takes longer, so fewer than all rules may finish "
            f"within an arm), alternated "
            f"{p['repeats']} times, medians."), "",
           (f"- One pass over {e['rules']} rules: **{_ms(e['pass_p50_ms'])} ms** p50 (passes: "
           f"{', '.join(_ms(ms) for ms in e['pass_ms'])} ms)."),
           (f"- Ingest with evaluation every second: **{i['ratio']:.2f} ×** the logs/s without "
           f"({_n(i['evaluating_logs_per_s'])} vs {_n(i['idle_logs_per_s'])} logs/s; rules evaluated during each "
            f"evaluating arm: {evaluated})."), "",
           "| rule (filters / window) | rules | p50 ms | max ms | rows counted (p50) |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, g in e["per_rule"].items():
        out.append(
            f"| {name} | {g['rules']} | {_ms(g['p50_ms'])} | {_ms(g['max_ms'])} | {_n(g['rows_counted_p50'])} |"
        )
    out += ["", "Plans of each shape's count over a 5-minute window (EXPLAIN ANALYZE, BUFFERS):", ""]
    for name, plan in e["plans"].items():
        out += [f"<details><summary>{name}</summary>", "", "```", plan, "```", "", "</details>", ""]
    return out


def search_section(data: dict[str, Any]) -> list[str]:
    """The search suite: needles in each place per arm (index off, on), against the targets; the index's cost."""
    p, r = data["parameters"], data["results"]
    corpus, arms = r["corpus"], r["arms"]
    names = [a["arm"] for a in arms]
    by_arm = {a["arm"]: {q["name"]: q for q in a["queries"]} for a in arms}
    setting = r["setting"]
    out = ["## Search: the needle in a week of logs (search suite)", "",
           (f"{corpus['logs']:,} generated logs over {p['days']} days (a pool of {p['pool']:,} parsed logs cycled; every "
            f"message with a request id that occurs once, one log in {p['order_every']} with an `order_id` that "
            f"occurs once): closed days COPYed into PostgreSQL, today's through `POST /logs`, then the oldest "
            f"{p['archived_days']} days archived to Parquet by `python -m app archive` ({corpus['postgres_logs']:,} "
            f"logs stay in PostgreSQL at {corpus['postgres_bytes_per_log']:.0f} B/log, {corpus['archived_logs']:,} "
            f"archived at {corpus['parquet_bytes_per_log']:.0f} B/log). A request id, an order id and a rare phrase are "
            "planted once today, in a closed day in PostgreSQL and in the oldest, archived day. GET /logs of a real "
            f"`python -m app`, one warm-up then up to {p['runs']} runs (at least {p['min_runs']}, fewer once a query "
            f"has taken {p['budget_s']:.0f} s), QUERY_TIMEOUT {p['query_timeout_s']} s; no `since`: the whole "
            f"history, as a pasted id is searched. Arms: {', '.join(f'`{n}`' for n in names)} "
            f"({setting['name']})."), ""]  # fmt: skip
    if note := setting.get("note"):
        out += [f"**{note}.**", ""]
    if built := setting.get("built_with"):
        out += [f"{built[0].upper()}{built[1:]}.", ""]
    target = p["target_ms"]
    out += ["| target | " + " | ".join(names) + " | met by |", "|---|" + "---:|" * len(names) + "---|"]
    for name in (q["name"] for q in arms[0]["queries"] if q["target"]):
        cells = [by_arm[a][name]["p50_ms"] for a in names]
        met = [a for a, ms in zip(names, cells, strict=True) if ms <= target]
        out.append(f"| {name}: p50 ≤ {target:.0f} ms | " + " | ".join(_took(ms) for ms in cells)
                   + f" | {', '.join(met) or 'none'} |")  # fmt: skip
    ingest = r.get("ingest")
    ratio = p["target_postgres_cpu_ratio"]
    if ingest:
        medians = ingest["medians"]
        cells = [f"{medians[a]['postgres_cpu_us_per_log']:.1f} µs"
                 + (f" ({ingest['postgres_cpu_ratio'][a]:.3f}×)" if a in ingest["postgres_cpu_ratio"] else "")
                 for a in names]  # fmt: skip
        met = [a for a, x in ingest["postgres_cpu_ratio"].items() if x <= ratio]
        out.append(f"| PostgreSQL CPU per stored log at ingest ≤ {ratio}× `{names[0]}` | " + " | ".join(cells)
                   + f" | {', '.join(met) or 'none'} |")  # fmt: skip
    else:
        out.append(f"| PostgreSQL CPU per stored log at ingest ≤ {ratio}× index off | not measured (no index) |"
                   + " |" * len(names))  # fmt: skip
    out += ["", "Every query, p50 / p90 (rows in the answer):", "",
            "| query | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]  # fmt: skip
    for query in arms[0]["queries"]:
        cells = []
        for a in names:
            q = by_arm[a][query["name"]]
            cell = f"{_took(q['p50_ms'])} / {_took(q['p90_ms'])} ({q['matches']})"
            if "rows_per_s" in q:
                cell += f", {_n(q['rows_per_s'])} rows/s"
            cells.append(cell)
        out.append(f"| {query['name']} (`{_params(query['params'])}`) | " + " | ".join(cells) + " |")
    quoted = [
        a
        for a in names
        if any(q["kind"] == "quoted phrase" and q["matches"] == 0 for q in by_arm[a].values())
    ]
    if quoted:
        out += ["", (f"A quoted phrase found nothing with {', '.join(f'`{a}`' for a in quoted)}: that server takes the "
                     "quotes as part of the substring (the unquoted phrase found its log).")]  # fmt: skip
    if r.get("identical"):
        same = ", ".join(f"`{a}` {'identical' if v else '**differ**'}" for a, v in r["identical"].items())
        out += ["", f"Answers against `{names[0]}`'s, byte for byte: {same}."]
    out += ["", f"The archive pass over {p['archived_days']} days: {r['archive_pass']['seconds']:.1f} s."]
    if load := r.get("load_average"):
        out[-1] += (f" The machine's load average (1, 5, 15 min) was {', '.join(map(str, load['start']))} at the start"
                    + (f" and {', '.join(map(str, load['end']))} at the end" if "end" in load else "") + ".")  # fmt: skip
    if index := r.get("index"):
        build = r["build"]
        files = index["file_bytes_per_log"]
        out += ["", (f"The index's cost: building it (`{build['command']}`, then waiting until the server's side "
                     f"tables held still) took {index['build_cpu_us_per_log']:.1f} µs of CPU per log"
                     + (f", PostgreSQL {build['postgres_cpu_us_per_log']:.1f} µs per log in the build"
                        if build.get("postgres_cpu_us_per_log") is not None else "")
                     + f"; it holds {index['postgres_bytes_per_log']:.1f} B per log in PostgreSQL"
                     + (f" ({', '.join(index['side_tables'])})" if index["side_tables"] else "")
                     + (f" and {files:.1f} B per archived log in files beside the Parquet parts" if files else "")
                     + "." + (f" {index['note']}." if index.get("note") else ""))]  # fmt: skip
    if ingest:
        out += ["", (f"Ingest (`python -m app`, {p['clients']} clients, gzip batches of {p['batch']}, {p['warmup_s']} s "
                     f"warm-up + {p['duration_s']} s, then {p['tail_s']} s for work done after the writes), medians of "
                     f"{p['repeats']} alternated runs:"), "",
                "| arm | logs/s | server µs/log | PostgreSQL µs/log |", "|---|---:|---:|---:|"]  # fmt: skip
        for a in names:
            m = ingest["medians"][a]
            out.append(f"| `{a}` | {_n(m['logs_per_s'])} | {m['server_cpu_us_per_log']:.1f} | "
                       f"{m['postgres_cpu_us_per_log']:.1f} |")  # fmt: skip
    return [*out, ""]


def logql_section(data: dict[str, Any]) -> list[str]:
    """The logql suite: issue 30's queries over a week of logs against their targets, PostgreSQL CPU per
    query, and the rollup's ingest cost."""
    r, meta = data["results"], data["meta"]
    load = r["load_1m"]
    out = ["## LogQL: Grafana's queries over a week of logs (logql suite)", "",
           (f"{r['logs']:,} logs over {r['days']} days (20 services, 6 levels, 2 environments), seeded by SQL in "
           f"{r['seed_s']:.0f} s; each query over the last 24 hours, {data['parameters']['runs']} runs in the "
           "app's process (TestClient: no HTTP stack). PostgreSQL CPU is the cluster's, from /proc. Count and "
           "rate queries are read from the per-minute rollup (`log_minutes`) when their windows fall on minutes "
           "(start, step and range whole minutes); the same query started a second off the minute reads rows. "
           f"Load (1 min) {load['before']:.1f} before, {load['after_seed']:.1f} after seeding, "
           f"{load['after']:.1f} after; {meta.get('cores', '?')} cores."), "",
           "| query | step | p50 | min | target | PostgreSQL CPU / query | app CPU / query | series |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, q in r["queries"].items():
        target = q["target_ms"]
        verdict = "" if target is None else (" ✓" if q["p50_ms"] <= target else " ✗")
        pg = q["postgres_cpu_ms_per_query"]
        out.append(
            f"| {name}: `{q['query'].replace('|', chr(92) + '|')}` | {q['step'] or '–'} | {_took(q['p50_ms'])}{verdict}"
            f" | {_took(q['min_ms'])} | {_took(target) if target else '–'} | {_took(pg) if pg is not None else '–'}"
            f" | {_took(q['app_cpu_ms_per_query'])} | {q['series']} |"
        )
    ingest = r["ingest"]
    per_log = ingest["postgres_cpu_us_per_log"]
    share = ingest["rollup_share"]
    out += ["", f"Ingest: PostgreSQL CPU per stored log for COPY + the summary statement, batches of "
            f"{ingest['batch']}, median of {ingest['rounds']} alternated rounds of {ingest['logs_per_round']:,} logs: "
            f"{per_log['with rollup']} µs with the rollup's upsert folded in, {per_log['without rollup']} µs "
            f"without it" + (f" ({share:+.0%}; differences of a few % are this machine's noise)." if share is not None
                             else "."), ""]  # fmt: skip
    return out


def _took(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.1f} ms"


def _params(params: dict[str, str]) -> str:
    return "&".join(f"{k}={v}" for k, v in params.items()).replace("|", "\\|")
