"""LogQL text -> tokens, each with the line and column Loki's error messages name."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.logql.errors import ParseError

# Longest first: `|=` before `|`, `=~` before `=`.
_SYMBOLS = ("|=", "|~", "!=", "!~", "=~", "==", ">=", "<=", "|", "=", ">", "<", "{", "}", "(", ")", "[", "]",
            ",", "+", "-", "*", "/", "%", "^")  # fmt: skip
_DIGITS = frozenset("0123456789")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d|w|y))+", re.ASCII)
_BYTES = re.compile(r"\d+(?:\.\d+)?(?:[kKmMgGtTpPeE][iI]?)?[bB]", re.ASCII)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w|y)", re.ASCII)
NANOS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
         "d": 86400 * 10**9, "w": 7 * 86400 * 10**9, "y": 365 * 86400 * 10**9}  # fmt: skip
_BYTE_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5, "e": 1000**6,
               "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4, "pi": 1024**5, "ei": 1024**6}  # fmt: skip
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"',
            "'": "'"}  # fmt: skip


@dataclass(frozen=True)
class Token:
    kind: str  # IDENTIFIER STRING NUMBER DURATION BYTES EOF, or the symbol itself
    text: str
    line: int
    col: int
    value: object = None

    def describe(self) -> str:
        """The token as Loki's syntax errors name it."""
        if self.kind == "EOF":
            return "$end"
        if self.kind in ("IDENTIFIER", "STRING", "NUMBER", "DURATION", "BYTES"):
            return self.kind
        return self.text


def duration_ns(text: str) -> int:
    """`1h30m`, `500ms`, `1.5s` -> nanoseconds."""
    return round(sum(float(n) * NANOS[unit] for n, unit in _DURATION_PART.findall(text)))


def byte_count(text: str) -> float:
    number = re.match(r"\d+(?:\.\d+)?", text)
    assert number is not None
    return float(number[0]) * _BYTE_UNITS[text[number.end() : -1].lower()]


def tokens(text: str) -> list[Token]:
    found: list[Token] = []
    position, line, line_start = 0, 1, 0
    while position < len(text):
        char = text[position]
        if char == "\n":
            position, line, line_start = position + 1, line + 1, position + 1
            continue
        if char.isspace():
            position += 1
            continue
        col = position - line_start + 1
        if char == "#":  # a comment to the end of the line
            end = text.find("\n", position)
            position = len(text) if end < 0 else end
            continue
        if char in '"`':
            value, end = _string(text, position, line, col)
            found.append(Token("STRING", text[position:end], line, col, value))
            position = end
            continue
        if char in _DIGITS or (char == "." and text[position + 1 : position + 2] in _DIGITS):
            token, position = _numeric(text, position, line, col)
            found.append(token)
            continue
        if match := _IDENT.match(text, position):
            found.append(Token("IDENTIFIER", match[0], line, col))
            position = match.end()
            continue
        for symbol in _SYMBOLS:
            if text.startswith(symbol, position):
                found.append(Token(symbol, symbol, line, col))
                position += len(symbol)
                break
        else:
            raise ParseError(line, col, f"syntax error: unexpected {char}")
    col = position - line_start + 1
    found.append(Token("EOF", "", line, col))
    return found


_HEX = frozenset("0123456789abcdefABCDEF")


def _string(text: str, start: int, line: int, col: int) -> tuple[str, int]:
    quote = text[start]
    if quote == "`":
        end = text.find("`", start + 1)
        if end < 0:
            raise ParseError(line, col, "syntax error: unterminated raw string")
        return text[start + 1 : end], end + 1
    out: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == '"':
            return "".join(out), position + 1
        if char == "\n":
            break
        if char == "\\":
            escape = text[position + 1 : position + 2]
            if escape in _ESCAPES:
                out.append(_ESCAPES[escape])
                position += 2
                continue
            if escape in ("x", "u", "U"):
                width = {"x": 2, "u": 4, "U": 8}[escape]
                digits = text[position + 2 : position + 2 + width]
                code = int(digits, 16) if len(digits) == width and all(c in _HEX for c in digits) else -1
                # A surrogate or a code point past Unicode is no character to look for (as in Go's strconv).
                if 0 <= code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                    # Stored text holds U+FFFD where a log had U+0000 (PostgreSQL text cannot hold it).
                    out.append(chr(code) if code else "\ufffd")
                    position += 2 + width
                    continue
            raise ParseError(line, col, f"syntax error: invalid escape \\{escape} in a string")
        out.append(char)
        position += 1
    raise ParseError(line, col, "syntax error: unterminated string")


def _numeric(text: str, start: int, line: int, col: int) -> tuple[Token, int]:
    def followed(end: int) -> bool:
        return end < len(text) and (text[end].isalnum() or text[end] in "_µ")

    if (match := _DURATION.match(text, start)) and not followed(match.end()):
        return Token("DURATION", match[0], line, col, duration_ns(match[0])), match.end()
    if (match := _BYTES.match(text, start)) and not followed(match.end()):
        return Token("BYTES", match[0], line, col, byte_count(match[0])), match.end()
    match = _NUMBER.match(text, start)
    assert match is not None
    if followed(match.end()):
        raise ParseError(line, col, f"syntax error: unexpected {text[start : match.end() + 1]!s}")
    return Token("NUMBER", match[0], line, col, float(match[0])), match.end()
