"""The writer's filters (bloom.encoded, tokens.encoded_entries and metadata_texts, build.Blocks) are byte for
byte those of a plain reference (`_Reference`: the first, per-word implementation, kept here only), so blocks,
archived sidecars and lookups written before and after agree; and the false-positive rate the docs quote."""

from __future__ import annotations

import random
import re
import struct
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.search import bloom, build, tokens


class _Reference:
    """Words, entries and a filter as first written: a regex over the text, a probe per entry."""

    word = re.compile(r"\w+")
    escape = re.compile(r"\\.")
    string = re.compile(r'"([^"]*)"')

    @classmethod
    def words(cls, text: str) -> list[str]:
        return cls.word.findall(text.replace("\u0130", "i").lower())

    @classmethod
    def metadata_text(cls, json_text: str) -> str:
        if "\\u" in json_text:
            return " ".join(cls._strings(orjson.loads(json_text)))
        return " ".join(cls.string.findall(cls.escape.sub(" ", json_text)))

    @classmethod
    def _strings(cls, value: object) -> list[str]:
        if isinstance(value, dict):
            return [s for key, item in value.items() for s in [key, *cls._strings(item)]]
        if isinstance(value, list):
            return [s for item in value for s in cls._strings(item)]
        return [value] if isinstance(value, str) else []

    @staticmethod
    def entries(found: list[str]) -> set[str]:
        out = set(found)
        out.update([w[:8] for w in out if len(w) > 8] + [w[-8:] for w in out if len(w) > 8])
        return out

    @staticmethod
    def probe(entry: str) -> tuple[int, int]:
        pairs = [(1 << (n & 63)) | (1 << (n >> 6)) for n in range(1 << 12)]
        h = zlib.crc32(entry.encode("utf-8", "surrogatepass"))
        y = (h * 0xC2B2AE3D27D4EB4F) & ((1 << 64) - 1)
        mask = pairs[y & 0xFFF] | pairs[(y >> 12) & 0xFFF] | pairs[(y >> 24) & 0xFFF]
        return ((h * 0x9E3779B97F4A7C15) & ((1 << 64) - 1)) >> 32, mask

    @classmethod
    def build(cls, entries: set[str], bits: int = 16) -> bytes:
        n = max(1, (len(entries) * bits + 63) // 64)
        words = [0] * n
        for entry in entries:
            h, mask = cls.probe(entry)
            words[h % n] |= mask
        return struct.pack(f">{n}Q", *words)

    @classmethod
    def blocks(cls, rows: list[tuple[Any, ...]], bits: int = 16) -> list[list[Any]]:
        by_hour: dict[int, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_hour.setdefault(int(row[0].timestamp()) // 3600, []).append(row)
        out: list[list[Any]] = [[], [], [], [], []]
        for part in by_hour.values():
            texts = [t for r in part for t in [r[10], None if r[18] is None else cls.metadata_text(r[18])]]
            found = cls.entries(cls.words("\n".join(t for t in texts if t is not None)))
            times = [r[0] for r in part]
            values = [min(times).date(), min(times), max(times), len(part), cls.build(found, bits)]
            for column, value in zip(out, values, strict=True):
                column.append(value)
        return out


# Characters that stress the folding and splitting: the ones lower() treats specially, non-ASCII letters and
# digits, JSON's escapes and ASCII punctuation (case-ignorable ones included: final sigma looks across them).
# Lone surrogates only in text (JSON cannot hold them).
_TRICKY = st.sampled_from(list("Σσςİı\u212aKkAaß주문é1٣_ .:'^`-\n\t\"\\/"))
_TEXT = st.text(st.one_of(_TRICKY, st.just("\udc80"), st.characters()), max_size=60)
_STRING = st.text(st.one_of(_TRICKY, st.characters(codec="utf-8")), max_size=30)
_JSON = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), _STRING
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_STRING, inner, max_size=4),
    max_leaves=8,
)


# Nested JSON is slow to draw on a loaded machine: no timing check (no timed assertions in tests).
_UNTIMED = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


@_UNTIMED
@given(st.lists(_TEXT, max_size=6))
def test_entries_are_the_references(texts: list[str]) -> None:
    text = "\n".join(texts)
    expected = {e.encode("utf-8", "surrogatepass") for e in _Reference.entries(_Reference.words(text))}
    assert tokens.encoded_entries(text) == expected
    assert tokens.entries(tokens.words(text)) == _Reference.entries(_Reference.words(text))


@_UNTIMED
@given(st.lists(st.dictionaries(_STRING, _JSON, max_size=4), max_size=4))
def test_metadata_words_are_the_references(values: list[dict[str, Any]]) -> None:
    texts = [orjson.dumps(v).decode() for v in values]
    expected = {w for t in texts for w in _Reference.words(_Reference.metadata_text(t))}
    assert set(tokens.words(tokens.metadata_texts(texts))) == expected
    for text in texts:
        assert tokens.words(tokens.metadata_text(text)) == _Reference.words(_Reference.metadata_text(text))


@_UNTIMED
@given(st.sets(_TEXT.filter(bool), max_size=300), st.sampled_from([4, 8, 16]))
def test_a_filter_is_the_references(entries: set[str], bits: int) -> None:
    encoded = [e.encode("utf-8", "surrogatepass") for e in entries]
    assert bloom.encoded(encoded, len(entries), bits) == _Reference.build(entries, bits)
    if bits == bloom.BITS_PER_ENTRY and all(e.isascii() for e in entries):
        assert bloom.build(entries, len(entries)) == _Reference.build(entries)
    for entry in entries:
        if entry.isascii():
            assert bloom.probe(entry) == _Reference.probe(entry)


_ROW = st.tuples(
    st.integers(0, 3 * 3600 * 10**6), _TEXT, st.one_of(st.none(), st.dictionaries(_STRING, _JSON, max_size=4))
)


@settings(_UNTIMED, max_examples=60)
@given(st.lists(_ROW, max_size=40), st.integers(1, 40))
def test_a_writers_blocks_are_the_references(found: list[tuple[int, str, Any]], chunk: int) -> None:
    start = datetime(2026, 12, 6, tzinfo=UTC)
    rows = []
    for micros, message, metadata in found:
        row: list[Any] = [None] * 19
        row[0], row[10] = start + timedelta(microseconds=micros), message
        row[18] = None if metadata is None else orjson.dumps(metadata).decode()
        rows.append(tuple(row))
    blocks = build.Blocks()
    for at in range(0, len(rows), chunk):
        blocks.add(rows[at : at + chunk])
    got = blocks.params()
    expected = _Reference.blocks(rows, build.LIVE_BITS_PER_ENTRY)
    assert sorted(zip(*got, strict=True)) == sorted(zip(*expected, strict=True))


def test_false_positives_at_each_density() -> None:
    """The rates bloom.py's docstring and build.LIVE_BITS_PER_ENTRY quote: a filter of 5,000 random
    entries probed with 20,000 entries it does not hold."""
    rng = random.Random(7)
    held = {f"{rng.getrandbits(48):012x}" for _ in range(5_000)}
    others = [e for e in (f"{rng.getrandbits(48):012x}" for _ in range(20_000)) if e not in held]
    rates = {}
    for bits in (8, 16):
        data = bloom.encoded([e.encode() for e in held], len(held), bits)
        assert all(bloom.contains(data, [bloom.probe(e)]) for e in held)
        rates[bits] = sum(bloom.contains(data, [bloom.probe(e)]) for e in others) / len(others)
    assert rates[16] < 1 / 150
    assert rates[8] < 1 / 20
