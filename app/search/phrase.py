"""A quoted phrase (`q="connection reset"`): its words, in that order, as consecutive whole words of the
message, compared as the index's tokenizer sees them (app/search/tokens.py: runs of letters, digits and `_`,
folded to lower case by `fold`), whatever separates them (`Connection: RESET` matches).

The scan tests it with a regular expression that PostgreSQL (`~`) and DuckDB (`regexp_matches`, RE2) both
evaluate the same way, because it leans on neither's idea of a word character or of case: every class is an
explicit list of code point ranges computed here from Python's own tokenizer. A word character is one whose
fold is `\\w`; a phrase character c stands for every character whose fold is c (`k`: k, K and U+212A KELVIN
SIGN). So the regex matches a message exactly when `tokens.words(message)` holds the phrase's words one after
the other (`matches`, the reference the property tests compare both databases with), and such a row's block
holds every one of them: each is looked up (`lookup.entries`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from app.search import tokens

_SURROGATES = range(0xD800, 0xE000)


def parse(value: str) -> list[str] | None:
    """The phrase's words when `value` is wrapped in double quotes (`"connection reset"`), else None (a
    substring, as before). A quoted value without a word (`""`, `"--"`) has an empty list."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return tokens.words(value[1:-1])
    return None


def matches(message: str, words: Sequence[str]) -> bool:
    """The reference: `words` are consecutive words of the message as the tokenizer splits it."""
    found, n = tokens.words(message), len(words)
    return any(found[i : i + n] == list(words) for i in range(len(found) - n + 1))


def postgres(words: Sequence[str]) -> str:
    """The regex for PostgreSQL's `~` (an ARE: \\uXXXX and \\UXXXXXXXX escapes)."""
    return _regex(words, _postgres_char)


def duckdb(words: Sequence[str]) -> str:
    """The regex for DuckDB's regexp_matches (RE2: \\x{…} escapes)."""
    return _regex(words, _duckdb_char)


def _postgres_char(c: int) -> str:
    return f"\\u{c:04X}" if c <= 0xFFFF else f"\\U{c:08X}"


def _duckdb_char(c: int) -> str:
    return f"\\x{{{c:X}}}"


@functools.cache
def _separator(char: Callable[[int], str]) -> str:
    """A character that is not a word character, in one dialect (about 10 KB of ranges: made once)."""
    return "[^" + _ranges(_word_ranges(), char) + "]"


def _regex(words: Sequence[str], char: Callable[[int], str]) -> str:
    separator = _separator(char)
    body = (separator + "+").join("".join(_letter(c, char) for c in word) for word in words)
    return f"(^|{separator}){body}({separator}|$)"


def _letter(c: str, char: Callable[[int], str]) -> str:
    same = c if tokens.fold(c) == c else ""
    return "[" + "".join(char(ord(x)) for x in same + _unfold().get(c, "")) + "]"


def _ranges(ranges: Sequence[tuple[int, int]], char: Callable[[int], str]) -> str:
    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)


@functools.cache
def _every() -> tuple[str, str]:
    """Every character (surrogates aside, which UTF-8 text never holds) and its fold, as two strings."""
    text = "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))
    return text, tokens.fold(text)


@functools.cache
def _word_ranges() -> list[tuple[int, int]]:
    """The code point ranges of word characters (those whose fold is `\\w`), computed once."""
    text, folded = _every()
    return [(ord(text[m.start()]), ord(text[m.end() - 1])) for m in tokens.WORD.finditer(folded)]


@functools.cache
def _unfold() -> dict[str, str]:
    """For each folded character, the other characters that fold to it (fold is one character for one)."""
    out: dict[str, str] = {}
    for x, folded in zip(*_every(), strict=True):
        if x != folded:
            out[folded] = out.get(folded, "") + x
    return out
