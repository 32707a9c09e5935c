"""Which part of a log query runs in the database: the stream selector, and the line and label filters
before the first stage that changes the line or the labels, become app/query.py conditions (rendered for
PostgreSQL and for archived days); the rest runs in Python (app/logql/pipeline.py)."""

from __future__ import annotations

from dataclasses import dataclass

from app.logql import ast
from app.logql.pipeline import ERROR
from app.query import EVERY_LOG_LABELS, Condition

# Stages after which a label filter no longer sees the stored labels (or the line is another).
_CHANGING = (ast.Parser, ast.LineFormat, ast.LabelFormat, ast.Drop)


@dataclass(frozen=True)
class Plan:
    conditions: tuple[Condition, ...]
    stages: tuple[ast.Stage, ...]  # what is left for Python, the unwrap included
    unwrap: ast.Unwrap | None

    @property
    def in_database(self) -> bool:
        """True when nothing but the unwrap (if any) is left for Python."""
        return all(isinstance(s, ast.Unwrap) for s in self.stages)


# A regex every stored value of these labels matches (every log has them, never empty): no condition at all, so that
# Grafana's `{service_name=~".+"}` costs no per-row regex.
_ANY = frozenset({".+", ".*", "(?:.+)", "(?:.*)"})


def plan(query: ast.LogQuery) -> Plan:
    conditions = [
        Condition("label", m.name, (m.name, m.op, m.value))
        for m in query.matchers
        if not (m.op == "=~" and m.value in _ANY and m.name in EVERY_LOG_LABELS)
    ]
    rest: list[ast.Stage] = []
    changed = False
    for stage in query.stages:
        if not changed and isinstance(stage, ast.LineFilter):
            conditions.append(Condition("line", "message", (stage.op, stage.values)))
        elif (
            not changed
            and isinstance(stage, ast.LabelComparison)
            and stage.kind == "string"
            and stage.name != ERROR
        ):
            conditions.append(Condition("label", stage.name, (stage.name, stage.op, stage.value)))
        elif not changed and isinstance(stage, ast.Drop) and stage.names == (ERROR,):
            continue  # nothing before a parser sets __error__
        else:
            changed = changed or isinstance(stage, _CHANGING)
            rest.append(stage)
    unwraps = [s for s in rest if isinstance(s, ast.Unwrap)]
    return Plan(tuple(conditions), tuple(rest), unwraps[-1] if unwraps else None)
