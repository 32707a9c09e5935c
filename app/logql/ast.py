"""LogQL's syntax tree: what the parser (app/logql/parser.py) makes and the engine (app/logql/engine.py) runs.

Expr
├── LogQuery          a stream selector and its pipeline: answers streams
├── RangeAggregation  count_over_time(...[5m]) and friends: a series per label set
├── VectorAggregation sum by (x) (...), topk(3, ...), sort(...)
├── BinaryOp          a + b, a > bool 1, a and b
├── Literal           a number (a scalar)
└── VectorLiteral     vector(1)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Matcher:
    """`name op "value"` with op one of = != =~ !~ (a regex is anchored at both ends, as in Prometheus)."""

    name: str
    op: str
    value: str


@dataclass(frozen=True)
class LineFilter:
    """`|= "a" or "b"`, `!= "a"`, `|~ "re"`, `!~ "re"`: values are alternatives (`or`)."""

    op: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class LabelComparison:
    """`name op value`: a string matcher (= != =~ !~) or a comparison of numbers, durations (seconds) or
    bytes (`kind` says which the value was written as)."""

    name: str
    op: str
    value: str | float
    kind: str = "string"  # string | number | duration | bytes


@dataclass(frozen=True)
class LabelFilter:
    """`a and b`, `a or b` over comparisons (a comma or plain space between two is `and`)."""

    op: str
    left: LabelFilter | LabelComparison
    right: LabelFilter | LabelComparison


@dataclass(frozen=True)
class Parser:
    """`| json`, `| logfmt` (optionally with `name="expression"` extractions)."""

    kind: str
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Drop:
    """`| drop a, b="x"` and `| keep a, b` (`keep`): names, or matchers that must hold for the drop/keep."""

    keep: bool
    names: tuple[str | Matcher, ...]


@dataclass(frozen=True)
class LineFormat:
    template: str


@dataclass(frozen=True)
class LabelFormat:
    """`| label_format dst=src, dst="template"`: (destination, source label or template, is a template)."""

    items: tuple[tuple[str, str, bool], ...]


@dataclass(frozen=True)
class Unwrap:
    """`| unwrap name`, `| unwrap duration(name)` (seconds), `| unwrap bytes(name)`."""

    name: str
    conversion: str = ""  # "" | duration | duration_seconds | bytes


Stage = LineFilter | LabelComparison | LabelFilter | Parser | Drop | LineFormat | LabelFormat | Unwrap


@dataclass(frozen=True)
class LogQuery:
    matchers: tuple[Matcher, ...]
    stages: tuple[Stage, ...] = ()


@dataclass(frozen=True)
class Grouping:
    without: bool
    labels: tuple[str, ...]


@dataclass(frozen=True)
class RangeAggregation:
    """`op(query [range] offset o)`; `param` is quantile_over_time's φ; range and offset in nanoseconds."""

    op: str
    query: LogQuery
    range_ns: int
    offset_ns: int = 0
    param: float | None = None
    grouping: Grouping | None = None


@dataclass(frozen=True)
class VectorAggregation:
    op: str
    expr: Expr
    grouping: Grouping | None = None
    param: float | None = None


@dataclass(frozen=True)
class BinaryOp:
    op: str
    left: Expr
    right: Expr
    bool_modifier: bool = False
    matching: Grouping | None = field(default=None)  # on (…) / ignoring (…)


@dataclass(frozen=True)
class Literal:
    value: float


@dataclass(frozen=True)
class VectorLiteral:
    value: float


Expr = LogQuery | RangeAggregation | VectorAggregation | BinaryOp | Literal | VectorLiteral
