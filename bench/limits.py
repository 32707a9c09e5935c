"""The limits suite: what the most expensive bodies a client may send cost the server.

Each body is built to be as costly as possible within MAX_BODY_BYTES (10 MiB) and the other documented
limits, then decoded, validated and turned into rows by the server's own code (`app.intake.decode` and
`app.intake.rows`), several times; the CPU time of the slowest run is reported. A realistic batch of 1000 logs
is measured the same way, for scale.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from app.config import Settings
from app.errors import IngestError
from app.intake.decode import decode
from app.intake.rows import MAX_CONTAINERS, parse
from bench.data import LogFactory, body, gzipped

REPEATS = 3


def _fill(make: Callable[[int], dict[str, Any]], limit: int) -> bytes:
    """As many entries from `make` as fit under `limit` bytes (at most 1000, the batch limit)."""
    count = 1000
    while True:
        raw = json.dumps({"logs": [make(i) for i in range(count)]}).encode()
        if len(raw) <= limit:
            return raw
        count = int(count * limit / len(raw)) - 1


def _chain(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def bodies(limit: int) -> dict[str, tuple[bytes, str]]:
    """name -> (body, Content-Encoding)."""
    entry = {"level": "INFO", "service": "s", "message": "m"}
    # Objects and arrays are what cost most to decode: as many as the container limit allows per body.
    per_entry = MAX_CONTAINERS // 1000 - 2
    realistic = body(LogFactory(7).batch(1000))
    return {
        "realistic batch of 1000 (for scale)": (realistic, "identity"),
        "metadata nested 60 deep, NULs everywhere": (
            _fill(lambda i: {**entry, "message": "\x00" * 1500, "metadata": {"b": _chain(60)}}, limit),
            "identity",
        ),
        f"{per_entry} arrays per entry (container limit)": (
            _fill(
                lambda i: {**entry, "metadata": {"a": [[0]] * (per_entry // 2 - 1)}, "pad": "\x00" * 5000},
                limit,
            ),
            "identity",
        ),
        "500 metadata keys per entry, NUL in each": (
            _fill(lambda i: {**entry, "metadata": {f"k\x00{j}": "\x00" for j in range(500)}}, limit),
            "identity",
        ),
        "400 unknown fields per entry (schema pass), NULs": (
            _fill(lambda i: {**entry, **{f"x\x00{j}": "\x00" for j in range(400)}}, limit),
            "identity",
        ),
        "escapes in every message": (
            _fill(lambda i: {**entry, "message": 'é\\"\n\u2028' * 2000}, limit),
            "identity",
        ),
        "gzip bomb (10 MiB of spaces)": (gzipped(b'{"logs":[' + b" " * (limit - 100) + b"]}"), "gzip"),
    }


def run(progress: Callable[[str], None]) -> list[dict[str, Any]]:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    limit = settings.max_body_bytes
    results = []
    for name, (raw, encoding) in bodies(limit).items():
        progress(f"limits {name}")
        worst = 0.0
        outcome = ""
        for _ in range(REPEATS):
            started = time.process_time()
            try:
                outcome = f"{len(parse(decode(raw, encoding, limit), settings.max_batch_size))} rows"
            except IngestError as exc:
                outcome = f"{exc.status} {exc.code}"
            worst = max(worst, time.process_time() - started)
        results.append({"body": name, "bytes": len(raw), "encoding": encoding, "cpu_s": round(worst, 4),
                        "outcome": outcome})  # fmt: skip
    return results
