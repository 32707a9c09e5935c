"""Loki's HTTP parameter rules (pkg/loghttp, as documented): times, limit, direction, step."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from app.errors import BadRequest
from app.logql.lexer import _DURATION, duration_ns

MAX_LIMIT = 5000
DEFAULT_LIMIT = 100
MAX_POINTS = 11_000
HOUR_NS = 3600 * 10**9
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def now_ns() -> int:
    return time.time_ns()


def timestamp(value: str | None, default: int, name: str) -> int:
    """A time as Loki takes it: float seconds (with a `.`), an integer (<= 10 digits: seconds, else ns), or
    RFC 3339; ns since the epoch."""
    if value is None or value == "":
        return default
    text = value.strip()
    try:
        if "." in text and _RFC3339.fullmatch(text) is None:
            seconds = float(text)
            if not math.isfinite(seconds):
                raise ValueError
            return round(seconds * 1e9)
        if text.lstrip("-").isdigit():
            number = int(text)
            return number * 10**9 if len(text.lstrip("-")) <= 10 else number
        if _RFC3339.fullmatch(text):
            moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
            fraction = re.search(r"\.(\d+)", text)
            whole = int(moment.replace(microsecond=0).timestamp())
            nanos = int((fraction[1] + "000000000")[:9]) if fraction else 0
            return whole * 10**9 + nanos
    except (ValueError, OverflowError):
        pass
    raise BadRequest(f'invalid {name}: cannot parse "{value[:80]}" to a valid timestamp')


def duration(value: str, name: str) -> int:
    """A step or interval: float seconds, or a duration like `30s`, `500ms`; ns."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        if _DURATION.fullmatch(text):
            return duration_ns(text)
        raise BadRequest(f'invalid {name}: cannot parse "{value[:80]}" to a valid duration') from None
    if not math.isfinite(seconds):
        raise BadRequest(f'invalid {name}: cannot parse "{value[:80]}" to a valid duration')
    return round(seconds * 1e9)


def limit(value: str | None, name: str = "limit") -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f'invalid {name}: cannot parse "{value[:80]}" as an integer') from None
    if number <= 0:
        raise BadRequest(f"{name} must be a positive value")
    if number > MAX_LIMIT:
        raise BadRequest(
            f"max entries limit per query exceeded, limit > max_entries_limit_per_query ({number} > {MAX_LIMIT})"
        )
    return number


def forward(value: str | None) -> bool:
    if value is None or value == "" or value.lower() == "backward":
        return False
    if value.lower() == "forward":
        return True
    raise BadRequest(f'invalid direction "{value[:40]}": use forward or backward')


@dataclass(frozen=True)
class Range:
    start: int
    end: int
    step: int
    limit: int
    forward: bool

    def steps(self) -> list[int]:
        return list(range(self.start, self.end + 1, self.step))


def range_query(params: Mapping[str, str]) -> Range:
    end = timestamp(params.get("end"), now_ns(), "end")
    start = timestamp(params.get("start"), end - HOUR_NS, "start")
    if end < start:
        raise BadRequest("end timestamp must not be before start time")
    step_text = params.get("step")
    if step_text:
        step = duration(step_text, "step")
    else:
        step = max((end - start) // 10**9 // 250, 1) * 10**9
    if step <= 0:
        raise BadRequest(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
        )
    if (end - start) // step > MAX_POINTS:
        raise BadRequest(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution"
            " (?step=XX)"
        )
    return Range(start, end, step, limit(params.get("limit")), forward(params.get("direction")))


def instant_query(params: Mapping[str, str]) -> Range:
    at = timestamp(params.get("time"), now_ns(), "time")
    return Range(at, at, 1, limit(params.get("limit")), forward(params.get("direction")))
