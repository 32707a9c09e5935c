"""Evaluating LogQL over a Source (app/logql/store.py): log queries answer entries, metric queries series.

Semantics as Loki's: a range aggregation's window at step t is (t − range − offset, t − offset]; steps run
from start to end inclusive and a step without samples is left out; rate is count ÷ range seconds (no
extrapolation); quantiles interpolate as Prometheus's do. When a range aggregation's pipeline runs entirely
in the database, it is counted there in buckets of gcd(step, range) (Source.buckets) and the windows are
summed from the buckets; otherwise rows (at most max_rows) are read and the pipeline runs in Python.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.logql import ast
from app.logql.errors import QueryError
from app.logql.labels import Entry
from app.logql.labels import entry as make_entry
from app.logql.pipeline import compile_stages, run, unwrap_value
from app.logql.plan import plan
from app.query import Condition

Labels = tuple[tuple[str, str], ...]
Matrix = dict[Labels, dict[int, float]]
# Range aggregations the database sums per bucket, and the aggregates each needs.
BUCKETED = frozenset({"count_over_time", "rate", "bytes_over_time", "bytes_rate", "sum_over_time",
                      "avg_over_time", "min_over_time", "max_over_time", "stddev_over_time",
                      "stdvar_over_time"})  # fmt: skip
# Range aggregations whose sum over series is the same aggregation over the merged series.
_SUMMABLE = frozenset({"count_over_time", "rate", "bytes_over_time", "bytes_rate", "sum_over_time"})


@dataclass
class Bucket:
    """One bucket of one series as the database aggregates it: sums are exact (ints or Decimals from the
    database's numeric sums), made floats only when a window's value is computed."""

    count: int = 0
    bytes: int = 0
    total: Any = 0
    low: Any = math.inf
    high: Any = -math.inf
    squares: Any = 0

    def add(self, other: Bucket) -> None:
        self.count += other.count
        self.bytes += other.bytes
        self.total += other.total
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        self.squares += other.squares


class Source(Protocol):
    async def rows(
        self, conditions: Sequence[Condition], since_us: int, until_us: int, limit: int, forward: bool
    ) -> list[tuple[Any, ...]]:
        """Rows (app/logql/labels.py's ROW columns) with since_us <= created_at < until_us, newest first
        (oldest first when forward), at most `limit`."""

    async def buckets(
        self,
        conditions: Sequence[Condition],
        since_us: int,
        until_us: int,
        origin_ns: int,
        width_ns: int,
        labels: Sequence[str] | None,
        unwrap: str | None,
        limit: int,
        measure: str | float,
    ) -> list[tuple[int, dict[str, str], Bucket]] | None:
        """Per bucket ⌈(t − origin) / width⌉ and label set (the named labels, or every label when None):
        the aggregates of the rows (the unwrapped column's values when `unwrap`), at most `limit` groups.
        `measure` says which the query needs: "count", "bytes" (and the count), "values" (all), or a φ: that
        quantile of the values as the bucket's total. None when it cannot (the caller then reads rows)."""


def _key(labels: dict[str, str]) -> Labels:
    return tuple(sorted((k, v) for k, v in labels.items() if v != ""))


def _project(labels: dict[str, str], grouping: ast.Grouping | None) -> dict[str, str]:
    if grouping is None:
        return labels
    if grouping.without:
        return {k: v for k, v in labels.items() if k not in grouping.labels}
    return {k: labels.get(k, "") for k in grouping.labels}


class Engine:
    def __init__(self, source: Source, max_rows: int, max_series: int) -> None:
        self.source = source
        self.max_rows = max_rows
        self.max_series = max_series

    # --- log queries ---

    async def logs(
        self, query: ast.LogQuery, start_ns: int, end_ns: int, limit: int, forward: bool
    ) -> list[Entry]:
        """Entries with start <= t < end, newest first (or oldest first), at most `limit`, after the pipeline."""
        planned = plan(query)
        stages = compile_stages(planned.stages)
        since, until = -(-start_ns // 1000), -(-end_ns // 1000)
        fetch = limit if not stages else self.max_rows
        rows = await self.source.rows(planned.conditions, since, until, fetch, forward)
        found: list[Entry] = []
        for row in rows:
            item = make_entry(row)
            if run(stages, item):
                found.append(item)
                if len(found) == limit:
                    break
        return found

    # --- metric queries ---

    async def evaluate(self, expr: ast.Expr, steps: Sequence[int]) -> Matrix | float:
        """The query at each step (ns): a Matrix, or a float for a scalar."""
        return await self._eval(expr, list(steps), None)

    async def _eval(self, expr: ast.Expr, steps: list[int], hint: ast.Grouping | None) -> Matrix | float:
        if isinstance(expr, ast.Literal):
            return expr.value
        if isinstance(expr, ast.VectorLiteral):
            return {(): {t: expr.value for t in steps}}
        if isinstance(expr, ast.RangeAggregation):
            return await self._range(expr, steps, hint)
        if isinstance(expr, ast.VectorAggregation):
            inner_hint = expr.grouping if expr.op == "sum" and expr.grouping is not None else None
            if expr.op == "sum" and expr.grouping is None:
                inner_hint = ast.Grouping(False, ())
            inner = await self._eval(expr.expr, steps, inner_hint)
            if not isinstance(inner, dict):
                raise QueryError(f"{expr.op} takes a vector, not a scalar")
            return _aggregate(expr, inner, steps)
        if isinstance(expr, ast.BinaryOp):
            left = await self._eval(expr.left, steps, None)
            right = await self._eval(expr.right, steps, None)
            return _binary(expr, left, right, steps)
        raise QueryError("a log query is not a metric query")

    async def _range(self, node: ast.RangeAggregation, steps: list[int], hint: ast.Grouping | None) -> Matrix:
        planned = plan(node.query)
        grouping = node.grouping
        if grouping is None and hint is not None and node.op in _SUMMABLE:
            grouping = hint
        step = steps[1] - steps[0] if len(steps) > 1 else node.range_ns
        lo = steps[0] - node.range_ns - node.offset_ns
        hi = steps[-1] - node.offset_ns
        since, until = lo // 1000 + 1, hi // 1000 + 1
        unwrap = planned.unwrap
        sql_unwrap = unwrap is not None and unwrap.name == "duration_ms" and not unwrap.conversion
        names = list(grouping.labels) if grouping is not None and not grouping.without else None
        # A quantile over windows that do not overlap (one bucket each) is percentile_cont in the database,
        # when each series is one group (grouped by named labels).
        quantile = (
            node.op == "quantile_over_time"
            and node.param is not None
            and 0 <= node.param <= 1
            and (len(steps) == 1 or step == node.range_ns)
            and bool(names)
        )
        found = None
        if planned.in_database and (node.op in BUCKETED or quantile) and (unwrap is None or sql_unwrap):
            width = math.gcd(step, node.range_ns)
            origin = steps[0] - node.offset_ns
            measure: str | float = (
                "values" if unwrap else "bytes" if node.op.startswith("bytes_") else "count"
            )
            if quantile:
                assert node.param is not None
                measure = node.param
            found = await self.source.buckets(
                planned.conditions, since, until, origin, width, names,
                "duration_ms" if unwrap else None, self.max_series * 64 + 1, measure,
            )  # fmt: skip
        if found is not None:
            if len(found) > self.max_series * 64:
                raise QueryError(_too_many("series buckets", self.max_series * 64))
            series: dict[Labels, dict[int, Bucket]] = defaultdict(dict)
            for index, labels, bucket in found:
                if unwrap is not None:
                    labels.pop(unwrap.name, None)
                key = _key(_project(labels, grouping))
                if key in series and index in series[key]:
                    series[key][index].add(bucket)
                else:
                    series[key][index] = bucket
            self._check_series(len(series))
            return _from_buckets(node, series, steps, step, width)
        rows = await self.source.rows(planned.conditions, since, until, self.max_rows + 1, True)
        if len(rows) > self.max_rows:
            raise QueryError(_too_many("log lines", self.max_rows))
        stages = compile_stages(planned.stages)
        samples: dict[Labels, list[tuple[int, float]]] = defaultdict(list)
        for row in rows:
            item = make_entry(row)
            if not run(stages, item):
                continue
            if unwrap is not None:
                value = unwrap_value(item, unwrap)
                if value is None:
                    continue
                item.remove(unwrap.name)
            elif node.op in ("bytes_over_time", "bytes_rate"):
                value = float(len(item.line.encode()))
            else:
                value = 1.0
            samples[_key(_project(item.labels(), grouping))].append((item.ns, value))
        self._check_series(len(samples))
        return _from_samples(node, samples, steps)

    def _check_series(self, count: int) -> None:
        if count > self.max_series:
            raise QueryError(_too_many("series", self.max_series))


def _too_many(what: str, limit: int) -> str:
    return (
        f"maximum of {what} ({limit}) reached for a single query: narrow the time range, add label filters,"
        " or aggregate with sum by (…)"
    )


def _from_buckets(
    node: ast.RangeAggregation,
    series: dict[Labels, dict[int, Bucket]],
    steps: list[int],
    step: int,
    width: int,
) -> Matrix:
    per_window = node.range_ns // width
    stride = step // width
    out: Matrix = {}
    seconds = node.range_ns / 1e9
    for key, buckets in series.items():
        points: dict[int, float] = {}
        for k, t in enumerate(steps):
            last = k * stride
            window = Bucket()
            for index in range(last - per_window + 1, last + 1):
                if index in buckets:
                    window.add(buckets[index])
            if window.count == 0:
                continue
            points[t] = _bucket_value(node.op, window, seconds)
        if points:
            out[key] = points
    return out


def _bucket_value(op: str, w: Bucket, seconds: float) -> float:
    if op == "count_over_time":
        return float(w.count)
    if op == "rate":
        return w.count / seconds
    if op == "bytes_over_time":
        return float(w.bytes)
    if op == "bytes_rate":
        return w.bytes / seconds
    if op in ("sum_over_time", "quantile_over_time"):
        return float(w.total)
    if op == "avg_over_time":
        return float(w.total / w.count)
    if op == "min_over_time":
        return float(w.low)
    if op == "max_over_time":
        return float(w.high)
    mean = w.total / w.count
    variance = max(float(w.squares / w.count - mean * mean), 0.0)
    return math.sqrt(variance) if op == "stddev_over_time" else variance


def _from_samples(
    node: ast.RangeAggregation, samples: dict[Labels, list[tuple[int, float]]], steps: list[int]
) -> Matrix:
    out: Matrix = {}
    seconds = node.range_ns / 1e9
    for key, points in samples.items():
        points.sort()
        times = [t for t, _ in points]
        values: dict[int, float] = {}
        for t in steps:
            end = t - node.offset_ns
            first, last = bisect_right(times, end - node.range_ns), bisect_right(times, end)
            if first == last:
                continue
            window = [v for _, v in points[first:last]]
            values[t] = _window_value(node, window, seconds)
        if values:
            out[key] = values
    if node.op == "absent_over_time":
        return _absent(node, out, steps)
    return out


def _window_value(node: ast.RangeAggregation, window: list[float], seconds: float) -> float:
    op = node.op
    if op in ("count_over_time", "absent_over_time"):
        return float(len(window))
    if op in ("rate", "bytes_rate"):
        return sum(window) / seconds
    if op in ("bytes_over_time", "sum_over_time"):
        return sum(window)
    if op == "avg_over_time":
        return sum(window) / len(window)
    if op == "min_over_time":
        return min(window)
    if op == "max_over_time":
        return max(window)
    if op == "first_over_time":
        return window[0]
    if op == "last_over_time":
        return window[-1]
    if op == "stddev_over_time":
        return statistics.pstdev(window)
    if op == "stdvar_over_time":
        return statistics.pvariance(window)
    if op == "quantile_over_time":
        assert node.param is not None
        return quantile(node.param, window)
    if op == "rate_counter":
        raise QueryError("rate_counter is not supported")
    raise QueryError(f"unsupported range aggregation {op}")


def quantile(q: float, values: list[float]) -> float:
    """Prometheus's quantile: linear interpolation between the closest ranks; −Inf/+Inf outside [0, 1]."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = max(0, math.floor(rank))
    high = min(len(ordered) - 1, low + 1)
    weight = rank - math.floor(rank)
    return ordered[low] * (1 - weight) + ordered[high] * weight


def _absent(node: ast.RangeAggregation, present: Matrix, steps: list[int]) -> Matrix:
    """absent_over_time: 1 at the steps where no series had a sample, labelled with the selector's `=`."""
    seen = {t for points in present.values() for t in points}
    labels = {m.name: m.value for m in node.query.matchers if m.op == "="}
    points = {t: 1.0 for t in steps if t not in seen}
    return {_key(labels): points} if points else {}


# --- vector aggregations ---


def _aggregate(node: ast.VectorAggregation, inner: Matrix, steps: list[int]) -> Matrix:
    op = node.op
    if op in ("sort", "sort_desc"):
        return inner  # ordering is applied to instant vectors when answered (app/logql/answer.py)
    if op in ("topk", "bottomk"):
        assert node.param is not None
        return _top(inner, steps, int(node.param), op == "topk", node.grouping)
    groups: dict[Labels, list[Labels]] = defaultdict(list)
    for key in inner:
        groups[_key(_project(dict(key), node.grouping if node.grouping else ast.Grouping(False, ())))].append(
            key
        )
    out: Matrix = {}
    for group, members in groups.items():
        points: dict[int, float] = {}
        for t in steps:
            values = [inner[m][t] for m in members if t in inner[m]]
            if values:
                points[t] = _combine(op, values)
        if points:
            out[group] = points
    return out


def _combine(op: str, values: list[float]) -> float:
    if op == "sum":
        return math.fsum(values)
    if op == "avg":
        return math.fsum(values) / len(values)
    if op == "min":
        return min(values)
    if op == "max":
        return max(values)
    if op == "count":
        return float(len(values))
    if op == "stddev":
        return statistics.pstdev(values)
    if op == "stdvar":
        return statistics.pvariance(values)
    raise QueryError(f"unsupported aggregation {op}")


def _top(inner: Matrix, steps: list[int], k: int, largest: bool, grouping: ast.Grouping | None) -> Matrix:
    out: Matrix = defaultdict(dict)
    for t in steps:
        groups: dict[Labels, list[tuple[float, Labels]]] = defaultdict(list)
        for key, points in inner.items():
            if t in points:
                group = _key(_project(dict(key), grouping)) if grouping else ()
                groups[group].append((points[t], key))
        for members in groups.values():
            members.sort(key=lambda item: item[0], reverse=largest)
            for value, key in members[:k]:
                out[key][t] = value
    return dict(out)


# --- binary operators ---

_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b if b else (math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)),
    "%": lambda a, b: math.fmod(a, b) if b else math.nan,
    "^": lambda a, b: _power(a, b),
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}  # fmt: skip


def _power(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except (OverflowError, ValueError):
        return math.inf if a > 0 else math.nan


def _binary(
    node: ast.BinaryOp, left: Matrix | float, right: Matrix | float, steps: list[int]
) -> Matrix | float:
    op = node.op
    if op in ("and", "or", "unless"):
        if not isinstance(left, dict) or not isinstance(right, dict):
            raise QueryError(f"set operator {op} not allowed in binary scalar expression")
        return _set_op(op, left, right, node.matching)
    if isinstance(left, float) and isinstance(right, float):
        if op in _COMPARE:
            if not node.bool_modifier:
                raise QueryError("comparisons between scalars must use BOOL modifier")
            return 1.0 if _COMPARE[op](left, right) else 0.0
        return _ARITHMETIC[op](left, right)
    if isinstance(left, dict) and isinstance(right, dict):
        return _vector_vector(node, left, right)
    vector, scalar, scalar_left = (left, right, False) if isinstance(left, dict) else (right, left, True)
    assert isinstance(vector, dict) and isinstance(scalar, float)
    out: Matrix = {}
    for key, points in vector.items():
        new: dict[int, float] = {}
        for t, value in points.items():
            a, b = (scalar, value) if scalar_left else (value, scalar)
            if op in _COMPARE:
                keep = _COMPARE[op](a, b)
                if node.bool_modifier:
                    new[t] = 1.0 if keep else 0.0
                elif keep:
                    new[t] = value
            else:
                new[t] = _ARITHMETIC[op](a, b)
        if new:
            out[key if op in _COMPARE and not node.bool_modifier else _drop_name(key)] = new
    return out


def _drop_name(key: Labels) -> Labels:
    return tuple(item for item in key if item[0] != "__name__")


def _match_key(key: Labels, matching: ast.Grouping | None) -> Labels:
    if matching is None:
        return key
    return _key(_project(dict(key), matching))


def _vector_vector(node: ast.BinaryOp, left: Matrix, right: Matrix) -> Matrix:
    op = node.op
    by_key: dict[Labels, Labels] = {}
    for key in right:
        match = _match_key(key, node.matching)
        if match in by_key:
            raise QueryError(
                "found duplicate series for the match group on the right-hand side of the operation"
            )
        by_key[match] = key
    out: Matrix = {}
    for key, points in left.items():
        other = by_key.get(_match_key(key, node.matching))
        if other is None:
            continue
        result_key = key if node.matching is None else _match_key(key, node.matching)
        new: dict[int, float] = {}
        for t, a in points.items():
            if t not in right[other]:
                continue
            b = right[other][t]
            if op in _COMPARE:
                keep = _COMPARE[op](a, b)
                if node.bool_modifier:
                    new[t] = 1.0 if keep else 0.0
                elif keep:
                    new[t] = a
            else:
                new[t] = _ARITHMETIC[op](a, b)
        if new:
            out[result_key] = new
    return out


def _set_op(op: str, left: Matrix, right: Matrix, matching: ast.Grouping | None) -> Matrix:
    right_times: dict[Labels, set[int]] = defaultdict(set)
    for key, points in right.items():
        right_times[_match_key(key, matching)].update(points)
    out: Matrix = {}
    if op == "and":
        for key, points in left.items():
            times = right_times.get(_match_key(key, matching), set())
            kept = {t: v for t, v in points.items() if t in times}
            if kept:
                out[key] = kept
        return out
    if op == "unless":
        for key, points in left.items():
            times = right_times.get(_match_key(key, matching), set())
            kept = {t: v for t, v in points.items() if t not in times}
            if kept:
                out[key] = kept
        return out
    out = {key: dict(points) for key, points in left.items()}
    left_times: dict[Labels, set[int]] = defaultdict(set)
    for key, points in left.items():
        left_times[_match_key(key, matching)].update(points)
    for key, points in right.items():
        taken = left_times.get(_match_key(key, matching), set())
        kept = {t: v for t, v in points.items() if t not in taken}
        if kept:
            out.setdefault(key, {}).update(kept)
    return out
