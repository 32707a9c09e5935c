"""`python -m bench coldstart`: what a Lambda cold start costs before and during its first request.

Each run is a fresh interpreter, as a new Lambda container is: it imports `handler` (the app is built at
import), then calls `handler.handler` with an API Gateway HTTP API event (tests/events/apigw-http-v2.json,
the shape AWS sends) twice: the first call opens the database pool, the second is warm. Beside it, fresh
interpreters that import FastAPI alone: the part of the import that is not ours. Bytecode is not written
(PYTHONDONTWRITEBYTECODE=1): on Lambda the package directory is read-only, so our modules compile at every
cold start unless the package ships them compiled.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from bench.http import ROOT

RUNS = 7
EVENT = ROOT / "tests" / "events" / "apigw-http-v2.json"

_COLD = """
import json, sys, time
started = time.perf_counter()
import handler
imported = time.perf_counter()
event = json.loads(open(sys.argv[1]).read())
first = handler.handler(event, None)
answered = time.perf_counter()
second = handler.handler(event, None)
warm = time.perf_counter()
print(json.dumps({"import_ms": (imported - started) * 1000, "first_ms": (answered - imported) * 1000,
                  "warm_ms": (warm - answered) * 1000, "statuses": [first["statusCode"], second["statusCode"]]}))
"""
_FASTAPI = """
import json, time
started = time.perf_counter()
import fastapi
print(json.dumps({"import_ms": (time.perf_counter() - started) * 1000}))
"""


def _fresh(code: str, dsn: str, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LOGSAVE_", "DB_"))}
    env.update(DATABASE_URL=dsn, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", LOG_LEVEL="WARNING")
    with tempfile.TemporaryDirectory() as cwd:  # no stray .env
        done = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True,
                              text=True, timeout=120, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(dsn: str, progress: Callable[[str], None], runs: int = RUNS) -> dict[str, Any]:
    progress("coldstart: import handler, first and warm invocation")
    cold = [_fresh(_COLD, dsn, str(EVENT)) for _ in range(runs)]
    fastapi = [_fresh(_FASTAPI, dsn) for _ in range(runs)]
    statuses = sorted({status for run_ in cold for status in run_["statuses"]})
    return {
        "runs": runs,
        "import_handler_ms": round(statistics.median(r["import_ms"] for r in cold), 1),
        "import_fastapi_ms": round(statistics.median(r["import_ms"] for r in fastapi), 1),
        "first_invocation_ms": round(statistics.median(r["first_ms"] for r in cold), 1),
        "warm_invocation_ms": round(statistics.median(r["warm_ms"] for r in cold), 1),
        "statuses": statuses,
    }
