"""`python -m bench profile`: where the server's CPU goes under load, sampled by py-spy.

One worker serves each arm while py-spy samples it (`py-spy record --format raw`, idle time left out).
Every sample is charged to the deepest frame that belongs to a known layer (see LAYERS): time in a C
function is charged to the Python frame that called it, so msgspec's decoding counts as the parse and
zlib's as inflate. With the worker's CPU seconds and the logs acknowledged over the same interval, each
layer's share becomes µs of server CPU per log and per request.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import uvloop

from bench import http, lone
from bench.data import LogFactory

ARMS = [
    http.Arm("b1000-gzip-c8", "group", 1000, True, 8),
    http.Arm("b10-c32", "group", 10, False, 32),
]
RATE = 250  # samples per second
# (layer, pattern on a frame's "function (file:line)"), tried from the deepest frame up; first match wins.
LAYERS = [
    ("inflate (zlib)", r"app/intake/decode\.py"),
    ("parse, validate, build rows", r"app/(intake/rows|models|numeric|formats/\w+)\.py|msgspec|pydantic"),
    ("COPY: asyncpg's encoding and protocol", r"asyncpg/"),
    ("writer: group, transaction, summary, idempotency",
     r"app/(intake/writer|storage/summary|intake/idempotency|storage/partitions)\.py"),
    ("body receive", r"app/intake/body\.py|starlette/requests\.py"),
    ("request log and metrics", r"app/(requestlog|metrics|jsonlog)\.py|prometheus_client|logging/"),
    ("our endpoint (routes, intake, auth, errors)", r"app/(routes/|intake/intake|auth|errors|asgi|main)"),
    ("HTTP server (uvicorn, httptools)", r"uvicorn/|httptools|app/protocol\.py"),
    ("framework (FastAPI, Starlette)", r"fastapi/|starlette/"),
    ("event loop (asyncio, uvloop)", r"asyncio/|uvloop"),
]  # fmt: skip
_LAYERS = [(name, re.compile(pattern)) for name, pattern in LAYERS]
_FRAME = re.compile(r"^(?P<function>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def layer_of(stack: Sequence[str]) -> str:
    for frame in reversed(stack):
        for name, pattern in _LAYERS:
            if pattern.search(frame):
                return name
    return "other"


def _leaf(frame: str) -> str:
    """'function (/…/site-packages/pkg/mod.py:12)' -> 'pkg/mod.py function', paths from their package."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    return f"{_PACKAGE_PATH.sub('', match['file'])} {match['function']}"


# Everything up to a package's own directory: site-packages, the standard library, or this checkout.
_PACKAGE_PATH = re.compile(r"^(.*site-packages/|.*/lib/python3\.\d+/|.*/(?=app/|bench/))")


def summarize(raw: str, top: int = 15) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, samples per layer, samples per leaf function) from py-spy's raw (collapsed) output."""
    layers: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        stack = stack_text.split(";")
        total += count
        layers[layer_of(stack)] += count
        leaves[_leaf(stack[-1])] += count
    return total, layers, Counter(dict(leaves.most_common(top)))


MISSING = "py-spy is not installed (pip install -r requirements-bench.txt)"


def py_spy() -> str | None:
    """py-spy's path: first beside the running Python (a venv's bin/, which scripts and cron use without
    activating it, so it is not on PATH), then on PATH."""
    sibling = Path(sys.executable).parent / "py-spy"
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which("py-spy")


def _record(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    spy = py_spy()
    if spy is None:
        raise RuntimeError(MISSING)
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", str(RATE), "--duration", str(seconds), "--format", "raw",
         "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def run(
    dsn: str, warmup: float, duration: float, progress: Callable[[str], None], lone_runs: int = lone.RUNS
) -> dict[str, Any]:
    seconds = max(1, round(duration))
    factory = LogFactory(13)
    results = []
    with http.server(dsn, "group", 1) as (process, port), tempfile.TemporaryDirectory() as tmp:
        for arm in ARMS:
            progress(f"profile {arm.name}")
            requests = http.build_requests(port, http._bodies(factory, arm.batch), arm.gzip)
            asyncio.run(http._count(dsn, truncate=True))
            # Warm the server up unsampled, then sample exactly the measured phase.
            uvloop.run(http.load(port, requests, arm.clients, warmup, 0.0))
            out = Path(tmp) / f"{arm.name}.txt"
            spy = _record(process.pid, seconds, out)
            load = _measure(process, port, arm, requests, seconds, asyncio.run(http.postmaster(dsn)))
            _, stderr = spy.communicate(timeout=seconds + 60)
            if spy.returncode != 0 or not out.exists():
                raise RuntimeError(f"py-spy failed: {stderr.decode(errors='replace')[-2000:]}")
            total, layers, leaves = summarize(out.read_text())
            per_log = load["server_cpu_s"] / load["logs"] * 1e6
            per_request = load["server_cpu_s"] / load["requests"] * 1e6
            postgres_per_log = load["postgres_cpu_s"] / load["logs"] * 1e6
            results.append({
                "arm": arm.name, "batch": arm.batch, "gzip": arm.gzip, "clients": arm.clients,
                "logs_per_s": round(load["logs"] / load["seconds"], 1),
                "server_cpu_us_per_log": round(per_log, 2), "server_cpu_us_per_request": round(per_request, 1),
                "postgres_cpu_us_per_log": round(postgres_per_log, 2),
                "samples": total,
                "layers": [{"layer": name, "share": round(n / total, 4), "us_per_log": round(per_log * n / total, 2),
                            "us_per_request": round(per_request * n / total, 1)}
                           for name, n in layers.most_common()],
                "top_functions": [{"function": name, "share": round(n / total, 4)} for name, n in leaves.most_common()],
            })  # fmt: skip
    asyncio.run(http._count(dsn, truncate=True))
    progress("profile: a lone batch, step by step")
    return {"arms": results, "lone_batch": lone.run(dsn, lone_runs)}


def _measure(
    process: psutil.Process,
    port: int,
    arm: http.Arm,
    requests: list[bytes],
    seconds: int,
    postmaster: int | None,
) -> dict[str, Any]:
    with http.Sampler(process, postmaster) as sampler:
        _, measured, elapsed = uvloop.run(http.load(port, requests, arm.clients, 0.0, seconds))
    return {"logs": measured.acknowledged, "requests": measured.requests, "seconds": elapsed,
            "server_cpu_s": sampler.server_seconds, "postgres_cpu_s": sampler.postgres_seconds}  # fmt: skip
