"""Words: runs of letters, digits and `_` (Unicode aware, Python's `\\w`), folded to lower case.

What a block's filter holds (`entries`): every word of its messages and of its metadata's strings (keys and
values), and for a word longer than AFFIX characters also its first and last AFFIX characters.

What a query may look up (`needle_entries`), so that no matching row is ever missed. `q=` is a
case-insensitive *substring* of the message (PostgreSQL's ILIKE), so a needle's words are not always whole
words of the row: `eq-7f3a` is found in `req-7f3a9c2e`, whose words are `req` and `7f3a9c2e`. Inside the
needle, a word is bounded on a side when the needle has a character there (which is then a separator, since
words are maximal runs). A row that contains the needle contains, for each needle word w:

* bounded on both sides: w as a whole word of the row: the entry w;
* bounded on the left only (the needle's last word, when the needle does not end with a separator): a row
  word that starts with w; if len(w) >= AFFIX, the entry w[:AFFIX] (a row word's first AFFIX characters);
* bounded on the right only (the first word): a row word that ends with w: w[-AFFIX:] when long enough;
* bounded on neither (a needle that is one fragment, `7f3a9c2e`): any row word containing it: nothing to
  look up, the scan answers.

So `req-7f3a9c2e1b4d` looks up `7f3a9c2e` (the prefix of its last word); `connection reset by` looks up
`reset` and `nnection`; `timeout` alone scans (it also matches `timeouts`).

Case folding must agree with PostgreSQL's `lower()`, which ILIKE applies and which depends on the database's
collation (libc or ICU). For ASCII both agree, so a message needle takes the fast path only when it is all
ASCII; a row's characters are folded one to one (the length never changes), with the two non-ASCII letters
that libc lowers to ASCII (U+0130 İ -> i, U+212A Kelvin K -> k) folded to them (`fold`), so that a row PostgreSQL
matches always holds the needle's words. A metadata value is compared exactly (`@>`), never lowered by
PostgreSQL, so any value's words can be looked up, Unicode included: both sides fold it the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from operator import itemgetter

import orjson

AFFIX = 8
WORD = re.compile(r"\w+")
_ASCII_WORD = re.compile(r"[A-Za-z0-9_]+")
# JSON text escapes only quotes, backslashes and control characters (orjson and jsonb's output alike), none of
# them word characters: each escape becomes a separator. \uXXXX may hide a letter: that text is decoded.
_ESCAPE = re.compile(r"\\.")
# A word's entries besides itself: its first and last AFFIX characters (the word itself when not longer).
_HEAD, _TAIL = itemgetter(slice(AFFIX)), itemgetter(slice(-AFFIX, None))
# UTF-8 bytes as `encoded_entries` splits them: ASCII letters lowered, every other ASCII character that is not
# a word character (`\w` and [A-Za-z0-9_] agree on ASCII) a space, the bytes of other characters kept.
_ASCII_WORDS = bytes(
    c if c >= 0x80 else ord(chr(c).lower()) if chr(c).isalnum() or c == 0x5F else 0x20 for c in range(256)
)


def fold(text: str) -> str:
    """Lower case, one character for one: U+0130 İ is the one character str.lower() makes two of (and the
    one libc lowers to ASCII i); U+212A Kelvin K already becomes k."""
    return text.replace("\u0130", "i").lower()


def words(text: str) -> list[str]:
    return WORD.findall(fold(text))


def metadata_text(json_text: str) -> str:
    """Metadata's JSON text as plain text whose words are those of its keys and string values (numbers, which
    `meta.` lookups never need, are left out: they are most of the distinct words of typical metadata)."""
    if "\\u" in json_text:
        return " ".join(_strings(orjson.loads(json_text)))
    if "\\" in json_text:
        json_text = _ESCAPE.sub(" ", json_text)
    return " ".join(json_text.split('"')[1::2])


def metadata_texts(json_texts: list[str]) -> str:
    """The words of `metadata_text` of each of these, in a few passes over them all (a writer's block): a
    JSON text's quotes pair up once its escapes are gone, so the strings of texts joined are the odd pieces
    between their quotes; each distinct string is kept once (a block's keys and most values recur)."""
    joined, decoded = "\n".join(json_texts), []
    if "\\u" in joined:
        decoded = [metadata_text(text) for text in json_texts if "\\u" in text]
        joined = "\n".join([text for text in json_texts if "\\u" not in text])
    if "\\" in joined:
        joined = _ESCAPE.sub(" ", joined)
    return "\n".join({*joined.split('"')[1::2], *decoded})


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def entries(found: Iterable[str]) -> set[str]:
    """A block's filter entries for these (distinct) words."""
    out = set(found)
    whole = list(out)
    out.update(map(_HEAD, whole), map(_TAIL, whole))
    return out


def encoded_entries(text: str) -> set[bytes]:
    """`entries(words(text))`, UTF-8 encoded, in a few passes over the whole text instead of Python work per
    word (the writer's cost per log): ASCII is split and lowered as bytes (`_ASCII_WORDS`), and only the
    distinct pieces holding other characters go through `fold` and `WORD`. Folding one such piece alone
    gives what folding the whole text gives except for U+03A3 Σ, the one character whose lower case depends
    on its neighbours (final sigma), so a text holding it is folded whole first."""
    if "\u03a3" in text:
        text = fold(text)
    out = set(text.encode("utf-8", "surrogatepass").translate(_ASCII_WORDS).split())
    other = [piece for piece in out if not piece.isascii()]
    out.difference_update(other)
    whole = list(out)
    out.update(map(_HEAD, whole), map(_TAIL, whole))
    if other:
        found = entries(
            WORD.findall(fold(" ".join([piece.decode("utf-8", "surrogatepass") for piece in other])))
        )
        out.update([entry.encode("utf-8", "surrogatepass") for entry in found])
    return out


def needle_entries(needle: str) -> list[str]:
    """The entries every row whose message contains `needle` (case-insensitively) has: see the module."""
    if not needle.isascii():
        return []
    lowered = needle.lower()
    out = []
    for match in _ASCII_WORD.finditer(lowered):
        word, left, right = match.group(), match.start() > 0, match.end() < len(lowered)
        if left and right:
            out.append(word)
        elif left and len(word) >= AFFIX:
            out.append(word[:AFFIX])
        elif right and len(word) >= AFFIX:
            out.append(word[-AFFIX:])
    return out


def value_entries(value: object) -> list[str]:
    """The entries every row whose metadata holds the string `value` somewhere has (its words, whole)."""
    return words(value) if isinstance(value, str) else []
