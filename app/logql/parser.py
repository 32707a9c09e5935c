"""LogQL text -> syntax tree (app/logql/ast.py): a recursive descent parser over app/logql/lexer.py's tokens.

Binary operators bind as in PromQL, loosest first: `or`; `and` `unless`; comparisons; `+ -`; `* / %`; `^`
(right-associative). Errors are Loki's: `parse error at line L, col C: syntax error: unexpected X`.
"""

from __future__ import annotations

import re
from functools import lru_cache

from app.logql import ast
from app.logql.errors import ParseError
from app.logql.lexer import Token, tokens

RANGE_OPS = frozenset({
    "count_over_time", "rate", "bytes_over_time", "bytes_rate", "absent_over_time",
    "sum_over_time", "avg_over_time", "min_over_time", "max_over_time", "first_over_time",
    "last_over_time", "stddev_over_time", "stdvar_over_time", "quantile_over_time", "rate_counter",
})  # fmt: skip
UNWRAPPED_OPS = RANGE_OPS - {"count_over_time", "rate", "bytes_over_time", "bytes_rate", "absent_over_time"}
VECTOR_OPS = frozenset({"sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "sort",
                        "sort_desc"})  # fmt: skip
_PRECEDENCE = [("or",), ("and", "unless"), ("==", "!=", ">", ">=", "<", "<="), ("+", "-"), ("*", "/", "%"),
               ("^",)]  # fmt: skip
_COMPARISONS = frozenset(_PRECEDENCE[2])
_LINE_OPS = ("|=", "!=", "|~", "!~")
_MATCH_OPS = ("=", "!=", "=~", "!~")
_NUMBER_OPS = ("==", "=", "!=", ">", ">=", "<", "<=")
_CONVERSIONS = ("duration", "duration_seconds", "bytes")
_EMPTY_ONLY = (
    "queries require at least one regexp or equality matcher that does not have an empty-compatible value. "
    'For instance, app=~".*" does not meet this requirement, but app=~".+" will'
)


@lru_cache(maxsize=256)
def parse(text: str) -> ast.Expr:
    """A LogQL query -> its tree; ParseError (a 400) naming the first problem."""
    parser = _Parser(tokens(text))
    try:
        expr = parser.expr()
    except RecursionError:
        raise ParseError.bare("the query is nested too deeply") from None
    parser.expect("EOF")
    if isinstance(expr, ast.BinaryOp) and _has_log_query(expr):
        raise ParseError(1, 1, "syntax error: a log query cannot be an operand: wrap it in a metric query")
    return expr


def _has_log_query(expr: ast.Expr) -> bool:
    if isinstance(expr, ast.LogQuery):
        return True
    if isinstance(expr, ast.BinaryOp):
        return _has_log_query(expr.left) or _has_log_query(expr.right)
    return False


def compile_regex(pattern: str, token: Token | None = None) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        line, col = (token.line, token.col) if token else (1, 1)
        raise ParseError(line, col, f"error parsing regexp: {exc}: `{pattern}`") from None


class _Parser:
    def __init__(self, found: list[Token]) -> None:
        self.tokens = found
        self.position = 0

    # --- tokens ---

    @property
    def peek(self) -> Token:
        return self.tokens[self.position]

    def ahead(self, offset: int = 1) -> Token:
        return self.tokens[min(self.position + offset, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.tokens[self.position]
        self.position = min(self.position + 1, len(self.tokens) - 1)
        return token

    def fail(self, token: Token | None = None, expecting: str = "") -> ParseError:
        token = token or self.peek
        tail = f", expecting {expecting}" if expecting else ""
        return ParseError(token.line, token.col, f"syntax error: unexpected {token.describe()}{tail}")

    def expect(self, kind: str) -> Token:
        if self.peek.kind != kind:
            raise self.fail(expecting=kind if kind != "EOF" else "")
        return self.take()

    def word(self, *words: str) -> bool:
        return self.peek.kind == "IDENTIFIER" and self.peek.text in words

    # --- expressions ---

    def expr(self, level: int = 0) -> ast.Expr:
        if level == len(_PRECEDENCE):
            return self.unary()
        left = self.expr(level + 1)
        while self.peek.kind in _PRECEDENCE[level] or (
            self.peek.kind == "IDENTIFIER" and self.peek.text in _PRECEDENCE[level]
        ):
            op = self.take().text
            bool_modifier = False
            if op in _COMPARISONS and self.word("bool"):
                self.take()
                bool_modifier = True
            matching = None
            if self.word("on", "ignoring"):
                without = self.take().text == "ignoring"
                matching = ast.Grouping(without, self.label_list())
                if self.word("group_left", "group_right"):
                    raise self.fail()
            # `^` is right-associative: its right side binds at its own level.
            right = self.expr(level if op == "^" else level + 1)
            left = ast.BinaryOp(op, left, right, bool_modifier, matching)
        return left

    def unary(self) -> ast.Expr:
        if self.peek.kind in ("-", "+"):
            sign = -1.0 if self.take().kind == "-" else 1.0
            operand = self.unary()
            if isinstance(operand, ast.Literal):
                return ast.Literal(sign * operand.value)
            return ast.BinaryOp("*", ast.Literal(sign), operand) if sign < 0 else operand
        return self.primary()

    def primary(self) -> ast.Expr:
        token = self.peek
        if token.kind == "NUMBER":
            self.take()
            assert isinstance(token.value, float)
            return ast.Literal(token.value)
        if token.kind == "(":
            self.take()
            inner = self.expr()
            self.expect(")")
            return inner
        if token.kind == "{":
            return self.log_query()
        if token.kind == "IDENTIFIER":
            if token.text == "vector":
                self.take()
                self.expect("(")
                value = self.number()
                self.expect(")")
                return ast.VectorLiteral(value)
            if token.text in RANGE_OPS and self.ahead().kind == "(":
                return self.range_aggregation()
            if (
                token.text in VECTOR_OPS
                and self.ahead().kind in ("(",)
                or (token.text in VECTOR_OPS and self.ahead().text in ("by", "without"))
            ):
                return self.vector_aggregation()
        raise self.fail()

    def number(self) -> float:
        sign = 1.0
        if self.peek.kind == "-":
            self.take()
            sign = -1.0
        token = self.expect("NUMBER")
        assert isinstance(token.value, float)
        return sign * token.value

    def label_list(self) -> tuple[str, ...]:
        self.expect("(")
        names: list[str] = []
        while self.peek.kind != ")":
            names.append(self.expect("IDENTIFIER").text)
            if self.peek.kind != ",":
                break
            self.take()
        self.expect(")")
        return tuple(names)

    def grouping(self) -> ast.Grouping | None:
        if self.word("by", "without"):
            without = self.take().text == "without"
            return ast.Grouping(without, self.label_list())
        return None

    def range_aggregation(self) -> ast.RangeAggregation:
        op_token = self.take()
        op = op_token.text
        self.expect("(")
        param = None
        if op == "quantile_over_time":
            param = self.number()
            self.expect(",")
        if self.peek.kind == "(":
            self.take()
            query = self.log_query()
            self.expect(")")
            range_ns = self.range()
        else:
            selector = self.selector()
            if self.peek.kind == "[":
                range_ns = self.range()
                query = ast.LogQuery(selector, self.stages())
            else:
                query = ast.LogQuery(selector, self.stages())
                range_ns = self.range()
        offset_ns = 0
        if self.word("offset"):
            self.take()
            offset_ns = self.duration()
        self.expect(")")
        grouping = self.grouping()
        unwrapped = any(isinstance(stage, ast.Unwrap) for stage in query.stages)
        if op in UNWRAPPED_OPS and not unwrapped:
            raise ParseError.bare(f"invalid aggregation {op} without unwrap")
        if op not in UNWRAPPED_OPS and unwrapped:
            raise ParseError.bare(f"invalid aggregation {op} with unwrap")
        if grouping is not None and op not in UNWRAPPED_OPS:
            raise ParseError(op_token.line, op_token.col, f"grouping not allowed for {op} aggregation")
        return ast.RangeAggregation(op, query, range_ns, offset_ns, param, grouping)

    def range(self) -> int:
        self.expect("[")
        value = self.duration()
        self.expect("]")
        return value

    def duration(self) -> int:
        token = self.expect("DURATION")
        assert isinstance(token.value, int)
        if token.value <= 0:
            raise ParseError(token.line, token.col, "syntax error: a range must be positive")
        return token.value

    def vector_aggregation(self) -> ast.VectorAggregation:
        op_token = self.take()
        op = op_token.text
        grouping = self.grouping()
        self.expect("(")
        param = None
        if op in ("topk", "bottomk"):
            param = self.number()
            if param != int(param) or param < 1:
                raise ParseError.bare(f"invalid parameter for {op}: {param:g}")
            self.expect(",")
        inner = self.expr()
        self.expect(")")
        if grouping is None:
            grouping = self.grouping()
        if isinstance(inner, ast.LogQuery):
            raise ParseError(
                op_token.line, op_token.col, f"syntax error: {op} takes a metric query, not a log query"
            )
        if op in ("sort", "sort_desc") and grouping is not None:
            raise ParseError(op_token.line, op_token.col, f"syntax error: {op} takes no grouping")
        return ast.VectorAggregation(op, inner, grouping, param)

    # --- log queries ---

    def log_query(self) -> ast.LogQuery:
        return ast.LogQuery(self.selector(), self.stages())

    def selector(self) -> tuple[ast.Matcher, ...]:
        self.expect("{")
        matchers: list[ast.Matcher] = []
        while self.peek.kind != "}":
            matchers.append(self.matcher())
            if self.peek.kind != ",":
                break
            self.take()
        self.expect("}")
        if not any(_selective(m) for m in matchers):
            raise ParseError.bare(_EMPTY_ONLY)
        return tuple(matchers)

    def matcher(self) -> ast.Matcher:
        name = self.expect("IDENTIFIER").text
        if self.peek.kind not in _MATCH_OPS:
            raise self.fail(expecting="= or != or =~ or !~")
        op = self.take().kind
        token = self.expect("STRING")
        assert isinstance(token.value, str)
        if op in ("=~", "!~"):
            compile_regex(token.value, token)
        return ast.Matcher(name, op, token.value)

    def stages(self) -> tuple[ast.Stage, ...]:
        stages: list[ast.Stage] = []
        while True:
            kind = self.peek.kind
            if kind in _LINE_OPS:
                stages.append(self.line_filter())
            elif kind == "|":
                self.take()
                stages.append(self.stage())
            else:
                return tuple(stages)

    def line_filter(self) -> ast.LineFilter:
        op = self.take().kind
        values = [self.string(op)]
        while self.word("or") and self.ahead().kind == "STRING":
            self.take()
            values.append(self.string(op))
        return ast.LineFilter(op, tuple(values))

    def string(self, op: str = "") -> str:
        token = self.expect("STRING")
        assert isinstance(token.value, str)
        if op in ("|~", "!~", "=~"):
            compile_regex(token.value, token)
        return token.value

    def stage(self) -> ast.Stage:
        token = self.peek
        if token.kind == "IDENTIFIER" and self.ahead().kind not in _NUMBER_OPS + _MATCH_OPS:
            name = token.text
            if name in ("json", "logfmt"):
                self.take()
                flags = []
                while self.peek.kind == "-" and name == "logfmt":  # --strict, --keep-empty
                    self.take()
                    self.expect("-")
                    flags.append(self.expect("IDENTIFIER").text)
                return ast.Parser(name, self.extractions())
            if name in ("drop", "keep"):
                self.take()
                return self.drop(keep=name == "keep")
            if name == "line_format":
                self.take()
                return ast.LineFormat(self.string())
            if name == "label_format":
                self.take()
                return self.label_format()
            if name == "unwrap":
                self.take()
                return self.unwrap()
        if token.kind in ("IDENTIFIER", "("):
            return self.label_filter()
        raise self.fail()

    def extractions(self) -> tuple[tuple[str, str], ...]:
        items: list[tuple[str, str]] = []
        while self.peek.kind == "IDENTIFIER" and self.ahead().kind in ("=", ",", "|", "EOF", ")", "["):
            name = self.take().text
            expression = name
            if self.peek.kind == "=":
                self.take()
                expression = self.string()
            items.append((name, expression))
            if self.peek.kind != ",":
                break
            self.take()
        return tuple(items)

    def drop(self, keep: bool) -> ast.Drop:
        names: list[str | ast.Matcher] = []
        while True:
            name = self.expect("IDENTIFIER").text
            if self.peek.kind in _MATCH_OPS:
                op = self.take().kind
                value = self.string(op)
                names.append(ast.Matcher(name, op, value))
            else:
                names.append(name)
            if self.peek.kind != ",":
                return ast.Drop(keep, tuple(names))
            self.take()

    def label_format(self) -> ast.LabelFormat:
        items: list[tuple[str, str, bool]] = []
        while True:
            destination = self.expect("IDENTIFIER").text
            self.expect("=")
            if self.peek.kind == "STRING":
                items.append((destination, self.string(), True))
            else:
                items.append((destination, self.expect("IDENTIFIER").text, False))
            if self.peek.kind != ",":
                return ast.LabelFormat(tuple(items))
            self.take()

    def unwrap(self) -> ast.Unwrap:
        if self.word(*_CONVERSIONS) and self.ahead().kind == "(":
            conversion = self.take().text
            self.expect("(")
            name = self.expect("IDENTIFIER").text
            self.expect(")")
            return ast.Unwrap(name, conversion)
        return ast.Unwrap(self.expect("IDENTIFIER").text)

    def label_filter(self) -> ast.LabelFilter | ast.LabelComparison:
        left = self.filter_and()
        while self.word("or"):
            self.take()
            left = ast.LabelFilter("or", left, self.filter_and())
        return left

    def filter_and(self) -> ast.LabelFilter | ast.LabelComparison:
        left = self.filter_primary()
        while True:
            if self.word("and") or self.peek.kind == ",":
                self.take()
            elif not (
                (self.peek.kind == "IDENTIFIER" and self.peek.text not in ("or", "offset"))
                or self.peek.kind == "("
            ):
                return left
            left = ast.LabelFilter("and", left, self.filter_primary())

    def filter_primary(self) -> ast.LabelFilter | ast.LabelComparison:
        if self.peek.kind == "(":
            self.take()
            inner = self.label_filter()
            self.expect(")")
            return inner
        name = self.expect("IDENTIFIER").text
        if self.peek.kind not in _NUMBER_OPS + _MATCH_OPS:
            raise self.fail()
        op_token = self.take()
        op = op_token.kind
        value = self.peek
        if value.kind == "STRING":
            if op not in _MATCH_OPS:
                raise self.fail(value)
            return ast.LabelComparison(name, op, self.string(op))
        if op in ("=~", "!~"):
            raise self.fail(value, expecting="STRING")
        sign = 1.0
        if value.kind == "-":
            self.take()
            sign, value = -1.0, self.peek
        if value.kind not in ("NUMBER", "DURATION", "BYTES"):
            raise self.fail(value)
        self.take()
        assert isinstance(value.value, (int, float))
        number = float(value.value) / (1e9 if value.kind == "DURATION" else 1)
        kind = value.kind.lower()
        return ast.LabelComparison(name, "==" if op == "=" else op, sign * number, kind)


def _selective(matcher: ast.Matcher) -> bool:
    """A matcher that does not match the empty value narrows the selection (Loki requires one)."""
    if matcher.op == "=":
        return matcher.value != ""
    if matcher.op == "=~":
        return re.fullmatch(matcher.value, "") is None
    return False
