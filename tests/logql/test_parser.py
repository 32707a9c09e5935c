"""LogQL text -> tree, and Loki's parse errors: the subset Grafana generates and people write, each case
written from Loki's LogQL documentation."""

from __future__ import annotations

import pytest

from app.logql import ast
from app.logql.errors import ParseError
from app.logql.lexer import tokens
from app.logql.parser import parse

SEL = (ast.Matcher("app", "=", "foo"),)


def test_stream_selector_with_every_matcher() -> None:
    assert parse('{app="foo", env!="dev", pod=~"web-.+", ns!~"kube.*"}') == ast.LogQuery((
        ast.Matcher("app", "=", "foo"),
        ast.Matcher("env", "!=", "dev"),
        ast.Matcher("pod", "=~", "web-.+"),
        ast.Matcher("ns", "!~", "kube.*"),
    ))  # fmt: skip


def test_line_filters_chain_and_take_or() -> None:
    tree = parse('{app="foo"} |= "a" or "b" != "c" |~ `d\\d` !~ "e"')
    assert tree == ast.LogQuery(SEL, (
        ast.LineFilter("|=", ("a", "b")),
        ast.LineFilter("!=", ("c",)),
        ast.LineFilter("|~", ("d\\d",)),
        ast.LineFilter("!~", ("e",)),
    ))  # fmt: skip


def test_parsers_and_label_filters_of_every_kind() -> None:
    tree = parse(
        '{app="foo"} | json | logfmt | status >= 500 and took > 1.5s or size <= 10KiB, method="GET" | __error__=""'
    )
    assert isinstance(tree, ast.LogQuery)
    json_, logfmt, filters, error = tree.stages
    assert json_ == ast.Parser("json") and logfmt == ast.Parser("logfmt")
    assert filters == ast.LabelFilter(
        "or",
        ast.LabelFilter(
            "and",
            ast.LabelComparison("status", ">=", 500.0, "number"),
            ast.LabelComparison("took", ">", 1.5, "duration"),
        ),
        ast.LabelFilter(
            "and",
            ast.LabelComparison("size", "<=", 10240.0, "bytes"),
            ast.LabelComparison("method", "=", "GET"),
        ),
    )
    assert error == ast.LabelComparison("__error__", "=", "")


def test_json_extractions_drop_keep_and_formats() -> None:
    tree = parse(
        '{app="foo"} | json first="servers[0]", ua="request.headers[\\"User-Agent\\"]" | drop a, b="x" | keep c'
        ' | line_format "{{.first}}" | label_format dst=src, t="{{.a}}"'
    )
    assert isinstance(tree, ast.LogQuery)
    assert tree.stages == (
        ast.Parser("json", (("first", "servers[0]"), ("ua", 'request.headers["User-Agent"]'))),
        ast.Drop(False, ("a", ast.Matcher("b", "=", "x"))),
        ast.Drop(True, ("c",)),
        ast.LineFormat("{{.first}}"),
        ast.LabelFormat((("dst", "src", False), ("t", "{{.a}}", True))),
    )


@pytest.mark.parametrize(
    ("text", "op", "unwrap", "range_ns", "offset_ns"),
    [
        ('count_over_time({app="foo"}[5m])', "count_over_time", None, 300 * 10**9, 0),
        ('rate({app="foo"} |= "x" [1h30m] offset 5m)', "rate", None, 5400 * 10**9, 300 * 10**9),
        ('bytes_rate(({app="foo"} | json)[10s])', "bytes_rate", None, 10 * 10**9, 0),
        ('sum_over_time({app="foo"} | unwrap n [1m])', "sum_over_time", ast.Unwrap("n"), 60 * 10**9, 0),
        ('avg_over_time({app="foo"} | unwrap duration(d) [1m])', "avg_over_time", ast.Unwrap("d", "duration"), 60 * 10**9, 0),
        ('max_over_time({app="foo"} | unwrap bytes(b) [500ms])', "max_over_time", ast.Unwrap("b", "bytes"), 5 * 10**8, 0),
    ],
)  # fmt: skip
def test_range_aggregations(
    text: str, op: str, unwrap: ast.Unwrap | None, range_ns: int, offset_ns: int
) -> None:
    tree = parse(text)
    assert isinstance(tree, ast.RangeAggregation)
    assert (tree.op, tree.range_ns, tree.offset_ns) == (op, range_ns, offset_ns)
    assert [s for s in tree.query.stages if isinstance(s, ast.Unwrap)] == ([unwrap] if unwrap else [])


def test_vector_aggregations_grouping_before_or_after() -> None:
    before = parse('sum by (a, b) (rate({app="foo"}[1m]))')
    after = parse('sum(rate({app="foo"}[1m])) by (a, b)')
    assert before == after
    assert isinstance(before, ast.VectorAggregation) and before.grouping == ast.Grouping(False, ("a", "b"))
    top = parse('topk(3, sum without (pod) (count_over_time({app="foo"}[1m])))')
    assert isinstance(top, ast.VectorAggregation) and top.param == 3.0
    quantile = parse('quantile_over_time(0.99, {app="foo"} | unwrap latency [5m]) by (path)')
    assert isinstance(quantile, ast.RangeAggregation)
    assert quantile.param == 0.99 and quantile.grouping == ast.Grouping(False, ("path",))


def test_binary_operators_bind_as_promql() -> None:
    tree = parse("1 + 2 * 3 ^ 2 ^ 2 > bool 4 or vector(5)")
    two = ast.BinaryOp("^", ast.Literal(3.0), ast.BinaryOp("^", ast.Literal(2.0), ast.Literal(2.0)))
    arithmetic = ast.BinaryOp("+", ast.Literal(1.0), ast.BinaryOp("*", ast.Literal(2.0), two))
    assert tree == ast.BinaryOp(
        "or", ast.BinaryOp(">", arithmetic, ast.Literal(4.0), bool_modifier=True), ast.VectorLiteral(5.0)
    )
    grafana = parse("vector(1)+vector(1)")
    assert grafana == ast.BinaryOp("+", ast.VectorLiteral(1.0), ast.VectorLiteral(1.0))
    assert parse("-1") == ast.Literal(-1.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{foo="bar"} |= ', "parse error at line 1, col 16: syntax error: unexpected $end, expecting STRING"),
        ('{foo="bar"', "parse error at line 1, col 11: syntax error: unexpected $end, expecting }"),
        ('{foo="bar"}\n| json |', "parse error at line 2, col 9: syntax error: unexpected $end"),
        ("{foo=bar}", "parse error at line 1, col 6: syntax error: unexpected IDENTIFIER, expecting STRING"),
        ('{foo!~""}', "queries require at least one regexp or equality matcher"),
        ('{foo=~".*", bar=""}', "queries require at least one regexp or equality matcher"),
        ('rate({foo="bar"})', "syntax error: unexpected ), expecting ["),
        ('sum_over_time({foo="bar"}[1m])', "parse error : invalid aggregation sum_over_time without unwrap"),
        ('rate({foo="bar"} | unwrap x [1m])', "parse error : invalid aggregation rate with unwrap"),
        ('{foo="bar"} |~ "a("', "error parsing regexp"),
        ('{foo="bar"} + 1', "a log query cannot be an operand"),
        ('sum({foo="bar"})', "sum takes a metric query, not a log query"),
        ('{foo="bar"} | status > "x"', "syntax error: unexpected STRING"),
        ('{foo="unterminated}', "unterminated string"),
        ("topk(0, vector(1))", "invalid parameter for topk"),
        ("(" * 5000 + "1" + ")" * 5000, "nested too deeply"),
    ],
)
def test_errors_in_lokis_words(text: str, message: str) -> None:
    with pytest.raises(ParseError) as raised:
        parse(text)
    assert message in raised.value.message
    assert raised.value.status == 400


def test_escapes_that_name_no_storable_character() -> None:
    # U+0000 is stored as U+FFFD (PostgreSQL text cannot hold it), so that is what a needle looks for; a
    # surrogate or a code point past Unicode is a parse error, not a query PostgreSQL would refuse.
    (matcher,) = [t for t in tokens(r'{a="x\u0000y"}') if t.kind == "STRING"]
    assert matcher.value == "x\ufffdy"
    for bad in (r'{a="\ud800"}', r'{a="\U00110000"}'):
        with pytest.raises(ParseError, match="invalid escape"):
            tokens(bad)
