"""bench/profile.py: py-spy's collapsed stacks charged to layers and to leaf functions; finding py-spy; every
front door profiled, with bodies the server stores; the report's row per front door."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import uuid
from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from bench import profile, report
from bench.data import LogFactory
from bench.profile import layer_of, summarize
from tests.support import DB

ROOT = Path(__file__).parent.parent
SITE = "/usr/lib/python3.11/site-packages"
RAW = f"""\
run (/usr/lib/python3.11/asyncio/runners.py:118);__call__ (/srv/app/routes/ingest.py:90);parse (/srv/app/intake/rows.py:120) 30
run (/usr/lib/python3.11/asyncio/runners.py:118);parse (/srv/app/intake/rows.py:120);dumps (/usr/lib/python3.11/json/__init__.py:231) 10
run (/usr/lib/python3.11/asyncio/runners.py:118);_run (/srv/app/intake/writer.py:200);copy_records_to_table ({SITE}/asyncpg/connection.py:1) 20
run (/usr/lib/python3.11/asyncio/runners.py:118) 15
run (/usr/lib/python3.11/asyncio/runners.py:118);send ({SITE}/uvicorn/protocols/http/httptools_impl.py:500) 5
<module> (/srv/somewhere/else.py:1) 2
"""


def test_samples_go_to_the_deepest_known_layer() -> None:
    total, layers, leaves = summarize(RAW)
    assert total == 82
    # json.dumps is not a layer of its own: it counts for the parse that called it.
    assert layers["parse, validate, build rows"] == 40
    assert layers["COPY: asyncpg's encoding and protocol"] == 20
    assert layers["event loop (asyncio, uvloop)"] == 15
    assert layers["HTTP server (uvicorn, httptools)"] == 5
    assert layers["other"] == 2
    assert leaves["app/intake/rows.py parse"] == 30 and leaves["json/__init__.py dumps"] == 10
    assert leaves["asyncpg/connection.py copy_records_to_table"] == 20


def test_unknown_stacks_are_other() -> None:
    assert layer_of(["main (/tmp/x.py:1)"]) == "other"


LOOP = "run (/usr/lib/python3.11/asyncio/runners.py:118)"
WRITER = "writer: group, transaction, summary, idempotency"
ENDPOINT = "our endpoint (routes, intake, auth, errors)"
PARSE = "parse, validate, build rows"


def test_the_front_doors_modules_have_layers() -> None:
    route = "post_bulk (/srv/app/routes/bulk.py:80)"
    # A bulk request's `_id` claims are taken in the writer's transaction, as an idempotency key is.
    assert (
        layer_of([LOOP, "_claim (/srv/app/intake/writer.py:280)", "claim (/srv/app/intake/documents.py:60)"])
        == WRITER
    )
    for module in ("bulk", "loki", "otlp", "firehose", "cloudwatch"):
        assert layer_of([LOOP, route, f"entries (/srv/app/formats/{module}.py:120)"]) == PARSE
    # A CloudWatch payload's gunzip is the shared inflate, called from app/formats/cloudwatch.py.
    gunzip = "gunzip (/srv/app/formats/cloudwatch.py:108)"
    assert layer_of([LOOP, gunzip, "_inflate (/srv/app/intake/decode.py:90)"]) == "inflate (zlib)"
    # The subscription path: handler.py and subscription.deliver are the endpoint, what they call is not.
    handler = "handler (/srv/handler.py:70)"
    deliver = "deliver (/srv/app/intake/subscription.py:90)"
    assert layer_of([handler, LOOP, deliver]) == ENDPOINT
    assert layer_of([handler, LOOP, deliver, "check (/srv/app/intake/subscription.py:58)"]) == ENDPOINT
    parse_values = "parse_values (/srv/app/intake/rows.py:230)"
    assert (
        layer_of([handler, LOOP, deliver, "check (/srv/app/intake/subscription.py:58)", parse_values])
        == PARSE
    )
    assert layer_of([handler, LOOP, deliver, "fingerprint (/srv/app/intake/idempotency.py:60)"]) == WRITER
    assert layer_of([handler]) == ENDPOINT
    mangum = f"__call__ ({SITE}/mangum/adapter.py:80)"
    assert layer_of([handler, mangum]) == "framework (FastAPI, Starlette, Mangum)"
    # Names that only look alike are not ours.
    assert layer_of([f"emit ({SITE}/logging/handlers.py:10)"]) == "request log and metrics"
    assert layer_of(["run (/srv/tools/my_handler.py:3)"]) == "other"


def test_every_front_door_is_profiled() -> None:
    """Each POST route that stores logs is an arm (its variants by path, e.g. /{index}/_bulk, are one door),
    Firehose with both kinds of record, and the CloudWatch subscription, which has no route."""
    app = create_app(Settings(_env_file=None, database_url="postgresql://unused@127.0.0.1/unused"))  # type: ignore[call-arg]
    posts = {path: item["post"] for path, item in app.openapi()["paths"].items() if "post" in item}
    # Alert rules and Loki's query API (LogQL takes POST forms) are POST routes that store no logs.
    reads = ("/alerts", "/loki/api/v1/query", "/loki/api/v1/label", "/loki/api/v1/series", "/loki/api/v1/index",
             "/loki/api/v1/detected")  # fmt: skip
    stores = {op["summary"] for path, op in posts.items() if not path.startswith(reads)}
    profiled = {posts[door.path]["summary"] for door in profile.DOORS} | {posts["/logs"]["summary"]}
    assert profiled == stores
    assert [door.path for door in profile.DOORS].count("/firehose") == 2
    assert "handler.handler" in profile.HANDLER
    assert profile.STEPS == len(profile.ARMS) + len(profile.DOORS) + 2


def test_each_front_doors_bodies_are_stored_once_per_send(client: TestClient, db: DB) -> None:
    """The bodies the suite sends, sent as its load sends them (gzip'd or not, a new key per send where the
    door has one), are acknowledged and stored in full; sent again with a new key, stored again."""
    batch = LogFactory(3).batch(5)
    for door in profile.DOORS:
        payload = door.payload(batch)
        stored = db.count()
        for _ in range(2):
            headers = {"Content-Type": door.content_type}
            if door.gzip:
                headers["Content-Encoding"] = "gzip"
            if door.key_header:
                headers[door.key_header.decode()] = str(uuid.uuid4())
            response = client.post(door.path, content=profile._gzipped(payload, door.gzip), headers=headers)
            assert response.status_code in (200, 204), (door.name, response.text)
            assert door.check is None or door.check(response.content), (door.name, response.text)
            stored += len(batch)
            assert db.count() == stored, door.name


def _arm(name: str, path: str | None, server: float, postgres: float | None) -> dict[str, object]:
    arm: dict[str, object] = {
        "arm": name, "logs_per_s": 20_000.0, "server_cpu_us_per_log": server, "server_cpu_us_per_request": server * 1000,
        "samples": 100, "top_functions": [{"function": "app/formats/otlp.py _pb_attributes", "share": 0.33}],
        "layers": [{"layer": "parse, validate, build rows", "share": 0.7, "us_per_log": server * 0.7, "us_per_request": 1.0},
                   {"layer": "COPY: asyncpg's encoding and protocol", "share": 0.2, "us_per_log": server * 0.2, "us_per_request": 1.0},
                   {"layer": "event loop (asyncio, uvloop)", "share": 0.05, "us_per_log": server * 0.05, "us_per_request": 1.0},
                   {"layer": "other", "share": 0.05, "us_per_log": server * 0.05, "us_per_request": 1.0}],
    }  # fmt: skip
    if path is not None:
        arm["path"] = path
    if postgres is not None:
        arm["postgres_cpu_us_per_log"] = postgres
    return arm


def test_the_report_has_a_row_per_front_door() -> None:
    # An older profile.json (POST /logs arms only, no path, no PostgreSQL CPU): rendered as before.
    old = {"results": {"arms": [_arm("b1000-gzip-c8", None, 11.0, None), _arm("b10-c32", None, 30.0, None)]}}
    rendered = "\n".join(report.profile_tables(old))
    assert "**`b1000-gzip-c8`**" in rendered and "**`b10-c32`**" in rendered
    assert "Every front door" not in rendered and "PostgreSQL" not in rendered
    new = {"results": {"arms": [_arm("b1000-gzip-c8", "/logs", 11.0, 10.0), _arm("b10-c32", "/logs", 30.0, 15.0),
                                _arm("otlp protobuf b1000-gzip-c8", "/v1/logs", 28.0, 8.0),
                                _arm(profile.HANDLER, "handler.handler", 16.0, 10.0)]}}  # fmt: skip
    lines = report.profile_tables(new)
    # The POST /logs arms keep their layer tables; the front doors are rows, beside POST /logs at batch 1000.
    rendered = "\n".join(lines)
    assert "**`b10-c32`**" in rendered and "**`otlp protobuf b1000-gzip-c8`**" not in rendered
    assert "30,000 µs per request, PostgreSQL 15.0 µs per log (server/PG 2.00×) (100 samples)" in rendered
    rows = [line for line in lines if line.startswith("| `")]
    assert rows == [
        "| `b1000-gzip-c8` | `POST /logs` | 20,000 | 11.0 | 10.0 | 1.10× | parse 7.7, COPY 2.2, event loop 0.6 |",
        "| `otlp protobuf b1000-gzip-c8` | `POST /v1/logs` | 20,000 | 28.0 | 8.0 | 3.50× | parse 19.6, COPY 5.6, event loop 1.4 |",
        f"| `{profile.HANDLER}` | `handler.handler` | 20,000 | 16.0 | 10.0 | 1.60× | parse 11.2, COPY 3.2, event loop 0.8 |",
    ]  # fmt: skip
    assert "- `otlp protobuf b1000-gzip-c8`: `app/formats/otlp.py _pb_attributes` 33.0%." in lines


def test_the_subscription_arm_samples_handler_in_a_child(tmp_path: Path, db: DB, database_url: str) -> None:
    """The CloudWatch Logs arm end to end: a Lambda-like child sampled by py-spy, every log it saved stored."""
    out = tmp_path / "handler.txt"
    arm = profile._handler(database_url, 0.1, 1, out)
    assert arm["arm"] == profile.HANDLER and arm["batch"] == 1000
    # Two warm-up events, then at least one measured: every one saved in full, and stored (checked inside).
    assert db.count() >= 3000 and db.count() % 1000 == 0
    assert arm["samples"] > 0 and arm["server_cpu_us_per_log"] > 0 and arm["postgres_cpu_us_per_log"] > 0
    layers = {layer["layer"] for layer in arm["layers"]}
    # The handler's own work: parsing the events' lines and COPYing them, both seen by the sampler.
    assert "parse, validate, build rows" in layers
    assert abs(sum(layer["share"] for layer in arm["layers"]) - 1) < 0.01
    assert json.loads(json.dumps(arm)) == arm


# --- finding py-spy: a venv used without activation (its bin/ not on PATH), as scripts and cron use it ---


def _venv(root: Path, with_py_spy: bool) -> Path:
    """A real venv (sys.executable is then its bin/python), and `py-spy` in its bin/ only if asked for.

    It sees this interpreter's packages through a .pth file naming this interpreter's site directories:
    --system-site-packages would give it the base Python's, which inside a venv are not these."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    directories = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    lines = [f"import site; site.addsitedir({directory!r})\n" for directory in directories]
    Path(purelib, "outer.pth").write_text("".join(lines))
    if with_py_spy:
        _fake_py_spy(venv / "bin")
    return python


def _fake_py_spy(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "py-spy"
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return path


def _bare_path() -> str:
    """PATH with no py-spy on it."""
    path = os.pathsep.join(["/usr/bin", "/bin"])
    assert shutil.which("py-spy", path=path) is None
    return path


def _found(python: Path, path: str) -> str:
    code = "from bench.profile import py_spy; print(py_spy())"
    done = subprocess.run(
        [str(python), "-c", code],
        check=False,
        cwd=ROOT,
        env={"PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_py_spy_beside_the_python_is_found_before_path(tmp_path: Path) -> None:
    python = _venv(tmp_path, with_py_spy=True)
    on_path = _fake_py_spy(tmp_path / "elsewhere")
    path = os.pathsep.join([str(on_path.parent), _bare_path()])
    assert _found(python, path) == str(python.parent / "py-spy")
    (python.parent / "py-spy").unlink()
    assert _found(python, path) == str(on_path)
    assert _found(python, _bare_path()) == "None"


def test_a_quick_run_without_py_spy_skips_the_profile_suite(tmp_path: Path, database_url: str) -> None:
    python = _venv(tmp_path, with_py_spy=False)
    env = {"PATH": _bare_path(), "DATABASE_URL": database_url, "BENCH_DATABASE_NAME": "logs_bench_test"}
    out = tmp_path / "out"
    quick = subprocess.run(
        [str(python), "-m", "bench", "profile", "--quick", "--out", str(out)],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert quick.returncode == 0, quick.stderr
    assert f"profile suite skipped: py-spy is neither beside {python} nor on PATH" in quick.stdout
    assert not (out / "profile.json").exists()
    # A full run needs the profile: it says so before measuring anything.
    full = subprocess.run(
        [str(python), "-m", "bench", "--out", str(out)],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert full.returncode == 2 and "py-spy is not installed" in full.stderr
    assert list(out.iterdir()) == []
