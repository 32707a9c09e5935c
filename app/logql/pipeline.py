"""A log pipeline's stages that run in Python, over rows a limit bounds: parsers, formatters, the label
filters on what they extract, unwrap. Each stage takes an Entry and keeps it (maybe changed) or drops it."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache

import orjson

from app.logql import ast
from app.logql.errors import QueryError
from app.logql.labels import Entry, label_value, sanitize
from app.logql.lexer import _BYTES, _DURATION, byte_count, duration_ns

ERROR = "__error__"
Stage = Callable[[Entry], bool]


def compile_stages(stages: Sequence[ast.Stage]) -> list[Stage]:
    return [_stage(stage) for stage in stages if not isinstance(stage, ast.Unwrap)]


def run(stages: Sequence[Stage], entry: Entry) -> bool:
    return all(stage(entry) for stage in stages)


def _stage(stage: ast.Stage) -> Stage:
    if isinstance(stage, ast.LineFilter):
        return _line_filter(stage)
    if isinstance(stage, (ast.LabelComparison, ast.LabelFilter)):
        test = label_test(stage)

        def filtered(entry: Entry) -> bool:
            return test(entry)

        return filtered
    if isinstance(stage, ast.Parser):
        return _json(stage.params) if stage.kind == "json" else _logfmt(stage.params)
    if isinstance(stage, ast.Drop):
        return _drop(stage)
    if isinstance(stage, ast.LineFormat):
        render = template(stage.template)

        def line_format(entry: Entry) -> bool:
            entry.line = render(entry)
            return True

        return line_format
    if isinstance(stage, ast.LabelFormat):
        return _label_format(stage)
    raise QueryError(f"unsupported stage {stage}")


def _line_filter(stage: ast.LineFilter) -> Stage:
    if stage.op in ("|=", "!="):
        needles = stage.values
        if stage.op == "|=":
            return lambda entry: any(n in entry.line for n in needles)
        return lambda entry: not any(n in entry.line for n in needles)
    patterns = [re.compile(v) for v in stage.values]
    if stage.op == "|~":
        return lambda entry: any(p.search(entry.line) for p in patterns)
    return lambda entry: not any(p.search(entry.line) for p in patterns)


_OPS: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}  # fmt: skip


def label_test(node: ast.LabelFilter | ast.LabelComparison) -> Callable[[Entry], bool]:
    """A label filter as a test of an entry."""
    if isinstance(node, ast.LabelFilter):
        left, right = label_test(node.left), label_test(node.right)
        if node.op == "and":
            return lambda entry: left(entry) and right(entry)
        return lambda entry: left(entry) or right(entry)
    name, op, wanted = node.name, node.op, node.value
    if node.kind == "string":
        assert isinstance(wanted, str)
        if op in ("=~", "!~"):
            pattern = re.compile(wanted)
            if op == "=~":
                return lambda entry: pattern.fullmatch(_value(entry, name)) is not None
            return lambda entry: pattern.fullmatch(_value(entry, name)) is None
        if op == "=":
            return lambda entry: _value(entry, name) == wanted
        return lambda entry: _value(entry, name) != wanted
    compare = _OPS[op]
    convert = {"number": number, "duration": seconds, "bytes": count_bytes}[node.kind]
    assert isinstance(wanted, float)

    def numeric(entry: Entry) -> bool:
        # As Loki: a line that already has an error passes (only string matchers filter it out), one
        # without the label does not, and one whose value cannot be read passes with LabelFilterErr.
        if ERROR in entry.parsed:
            return True
        text = entry.get(name)
        if text is None:
            return False
        value = convert(text)
        if value is None:
            entry.parsed[ERROR] = "LabelFilterErr"
            return True
        return compare(value, wanted)

    return numeric


def _value(entry: Entry, name: str) -> str:
    value = entry.get(name)
    return "" if value is None else value


def number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def seconds(text: str) -> float | None:
    """A Go duration (`1.5s`, `250ms`, `1h2m`) in seconds; a bare number is not one, as in Loki."""
    stripped = text.strip()
    negative = stripped.startswith("-")
    if _DURATION.fullmatch(stripped.lstrip("-")):
        value = duration_ns(stripped.lstrip("-")) / 1e9
        return -value if negative else value
    return None


def count_bytes(text: str) -> float | None:
    stripped = text.strip().replace(" ", "")
    if _BYTES.fullmatch(stripped):
        return byte_count(stripped)
    return number(stripped)


def unwrap_value(entry: Entry, unwrap: ast.Unwrap) -> float | None:
    """The unwrapped label's value, or None (a SampleExtractionErr: the sample is left out)."""
    text = entry.get(unwrap.name)
    if text is None:
        return None
    if unwrap.conversion in ("duration", "duration_seconds"):
        return seconds(text)
    if unwrap.conversion == "bytes":
        return count_bytes(text)
    return number(text)


def _add(entry: Entry, name: str, value: str) -> None:
    """A label a parser extracted: named `<name>_extracted` when it collides with a stream label or
    structured metadata (as Loki names it)."""
    if name in entry.stream or name in entry.metadata:
        name += "_extracted"
    entry.parsed[name] = value


def _json(params: tuple[tuple[str, str], ...]) -> Stage:
    paths = [(name, _json_path(expression)) for name, expression in params]

    def parse(entry: Entry) -> bool:
        try:
            document = orjson.loads(entry.line)
        except orjson.JSONDecodeError:
            entry.parsed[ERROR] = "JSONParserErr"
            return True
        if not isinstance(document, dict):
            entry.parsed[ERROR] = "JSONParserErr"
            return True
        if paths:
            for name, path in paths:
                found = _walk(document, path)
                if found is not None:
                    _add(entry, name, found)
            return True
        _flatten(entry, document, "")
        return True

    return parse


def _flatten(entry: Entry, document: dict[str, object], prefix: str) -> None:
    for key, value in document.items():
        name = prefix + sanitize(key)
        if isinstance(value, dict):
            _flatten(entry, value, name + "_")
        elif (text := label_value(value)) is not None:
            _add(entry, name, text)


_PATH_PART = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')


@lru_cache(maxsize=256)
def _json_path(expression: str) -> tuple[str | int, ...]:
    """`servers[0].name`, `request.headers["User-Agent"]` -> keys and indexes."""
    parts: list[str | int] = []
    position = 0
    while position < len(expression):
        match = _PATH_PART.match(expression, position)
        if match is None:
            raise QueryError(f"cannot read the json expression {expression!r}")
        parts.append(
            match[1] if match[1] is not None else int(match[2]) if match[2] is not None else match[3]
        )
        position = match.end()
    return tuple(parts)


def _walk(document: object, path: tuple[str | int, ...]) -> str | None:
    for part in path:
        if (isinstance(part, int) and isinstance(document, list) and part < len(document)) or (
            isinstance(part, str) and isinstance(document, dict) and part in document
        ):
            document = document[part]  # type: ignore[index]
        else:
            return None
    if isinstance(document, (dict, list)):
        return orjson.dumps(document).decode()
    return label_value(document)


_LOGFMT = re.compile(r'\s*([^\s=]+)(?:=("(?:[^"\\]|\\.)*"|\S*))?')


def logfmt_pairs(line: str) -> list[tuple[str, str]] | None:
    pairs = []
    position = 0
    while position < len(line):
        if line[position:].strip() == "":
            break
        match = _LOGFMT.match(line, position)
        if match is None or match.end() == position:
            return None
        key, value = match[1], match[2] or ""
        if value.startswith('"'):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                return None
        pairs.append((key, value))
        position = match.end()
    return pairs


def _logfmt(params: tuple[tuple[str, str], ...]) -> Stage:
    wanted = {expression: name for name, expression in params}

    def parse(entry: Entry) -> bool:
        pairs = logfmt_pairs(entry.line)
        if pairs is None:
            entry.parsed[ERROR] = "LogfmtParserErr"
            return True
        for key, value in pairs:
            if wanted:
                if key in wanted:
                    _add(entry, wanted[key], value)
            else:
                _add(entry, sanitize(key), value)
        return True

    return parse


def _drop(stage: ast.Drop) -> Stage:
    names = [n for n in stage.names if isinstance(n, str)]
    matchers = [m for m in stage.names if isinstance(m, ast.Matcher)]
    tests = [(m.name, label_test(ast.LabelComparison(m.name, m.op, m.value))) for m in matchers]

    def drop(entry: Entry) -> bool:
        for name in names:
            entry.remove(name)
        for name, test in tests:
            if test(entry):
                entry.remove(name)
        return True

    def keep(entry: Entry) -> bool:
        kept = set(names) | {name for name, test in tests if test(entry)}
        for labels in (entry.stream, entry.metadata, entry.parsed):
            for name in [n for n in labels if n not in kept]:
                del labels[name]
        return True

    return keep if stage.keep else drop


def _label_format(stage: ast.LabelFormat) -> Stage:
    items = [
        (dst, template(src) if is_template else src, is_template) for dst, src, is_template in stage.items
    ]

    def label_format(entry: Entry) -> bool:
        for destination, source, is_template in items:
            if is_template:
                assert callable(source)
                value = source(entry)
            else:
                assert isinstance(source, str)
                value = _value(entry, source)
                entry.remove(source)
            entry.remove(destination)
            entry.parsed[destination] = value
        return True

    return label_format


# --- templates: the part of Go's text/template that line_format and label_format are used with ---------

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)
_FUNCTIONS: dict[str, Callable[[str], str]] = {
    "ToUpper": str.upper, "ToLower": str.lower, "upper": str.upper, "lower": str.lower,
    "trim": str.strip, "TrimSpace": str.strip, "title": str.title, "Title": str.title,
}  # fmt: skip


def template(text: str) -> Callable[[Entry], str]:
    """`{{.name}}`, `{{ __line__ }}`, `{{ __timestamp__ }}`, a function of one value (`{{ ToUpper .name }}`
    or `{{ .name | ToUpper }}`); anything else is a 400 naming it."""
    pieces: list[str | Callable[[Entry], str]] = []
    position = 0
    for match in _ACTION.finditer(text):
        pieces.append(text[position : match.start()])
        pieces.append(_action(match[1]))
        position = match.end()
    pieces.append(text[position:])

    def render(entry: Entry) -> str:
        return "".join(p if isinstance(p, str) else p(entry) for p in pieces)

    return render


def _action(action: str) -> Callable[[Entry], str]:
    words = [w.strip() for w in action.split("|")]
    first = words[0].split()
    functions = [w for w in words[1:]]
    if len(first) == 2:
        functions.insert(0, first[0])
        first = first[1:]
    if len(first) != 1:
        raise QueryError(f"unsupported template action {{{{ {action} }}}}")
    source = first[0]
    for name in functions:
        if name not in _FUNCTIONS:
            raise QueryError(f"unsupported template function {name!r} in {{{{ {action} }}}}")
    chain = [_FUNCTIONS[name] for name in functions]
    if source == "__line__":

        def read(entry: Entry) -> str:
            return entry.line
    elif source == "__timestamp__":

        def read(entry: Entry) -> str:
            return str(entry.ns)
    elif source.startswith("."):
        name = source[1:]

        def read(entry: Entry) -> str:
            return _value(entry, name)
    else:
        raise QueryError(f"unsupported template action {{{{ {action} }}}}")

    def value(entry: Entry) -> str:
        text = read(entry)
        for function in chain:
            text = function(text)
        return text

    return value
