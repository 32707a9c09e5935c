"""Loki's answers: streams, matrices, vectors and scalars in Loki's JSON (pkg/loghttp)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from app.logql.engine import Matrix
from app.logql.labels import Entry

CATEGORIZE = "categorize-labels"


def value(number: float) -> str:
    """A sample as Prometheus writes it (Go's FormatFloat 'f', -1): no exponent, NaN, +Inf, -Inf."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number == int(number) and abs(number) < 1e15:
        return str(int(number))
    text = repr(number)
    return format(Decimal(text), "f") if "e" in text else text


def seconds(ns: int) -> int | float:
    return ns // 10**9 if ns % 10**9 == 0 else ns / 1e9


def success(result_type: str, result: Any, flags: Sequence[str] = ()) -> dict[str, Any]:
    data: dict[str, Any] = {"resultType": result_type, "result": result, "stats": {}}
    if flags:
        data["encodingFlags"] = list(flags)
    return {"status": "success", "data": data}


def streams(entries: Sequence[Entry], categorize: bool) -> dict[str, Any]:
    """Entries grouped by stream: by their stream labels (with categorize-labels, each entry then carrying
    its structured metadata and parsed labels), else by all their labels."""
    grouped: dict[tuple[tuple[str, str], ...], list[list[Any]]] = {}
    for item in entries:
        if categorize:
            key = tuple(sorted(item.stream.items()))
            extra: dict[str, Any] = {}
            if item.metadata:
                extra["structuredMetadata"] = item.metadata
            if item.parsed:
                extra["parsed"] = item.parsed
            grouped.setdefault(key, []).append([str(item.ns), item.line, extra])
        else:
            key = tuple(sorted(item.labels().items()))
            grouped.setdefault(key, []).append([str(item.ns), item.line])
    result = [{"stream": dict(key), "values": values} for key, values in grouped.items()]
    return success("streams", result, [CATEGORIZE] if categorize else ())


def matrix(series: Matrix) -> dict[str, Any]:
    result = [
        {"metric": dict(key), "values": [[seconds(t), value(v)] for t, v in sorted(points.items())]}
        for key, points in sorted(series.items())
    ]
    return success("matrix", result)


def vector(series: Matrix, at: int, order: str | None) -> dict[str, Any]:
    samples = [(dict(key), points[at]) for key, points in sorted(series.items()) if at in points]
    if order is not None:
        samples.sort(key=lambda s: s[1], reverse=order == "sort_desc")
    result = [{"metric": labels, "value": [seconds(at), value(v)]} for labels, v in samples]
    return success("vector", result)


def scalar(number: float, at: int) -> dict[str, Any]:
    return success("scalar", [seconds(at), value(number)])
