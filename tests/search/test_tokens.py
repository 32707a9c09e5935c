"""What a needle may look up, and case folding that agrees with PostgreSQL's ILIKE."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.search import tokens
from tests.support import DB


def test_only_words_a_substring_guarantees_are_looked_up() -> None:
    assert tokens.needle_entries("req-7f3a9c2e1b4d") == ["7f3a9c2e"]
    assert tokens.needle_entries("connection reset by") == ["nnection", "reset"]
    assert tokens.needle_entries(" timeout ") == ["timeout"]
    assert tokens.needle_entries("timeout") == []
    assert tokens.needle_entries("eq-7f3a") == []
    # Not ASCII: PostgreSQL's lower() depends on the collation; the scan answers.
    assert tokens.needle_entries("größe ok") == []


@given(st.text(), st.text(min_size=1), st.text())
def test_a_row_containing_a_needle_has_its_entries(before: str, needle: str, after: str) -> None:
    row = before + needle + after
    found = tokens.entries(tokens.words(row))
    assert set(tokens.needle_entries(needle)) <= found
    assert set(tokens.value_entries(needle)) <= tokens.entries(tokens.words(f'{{"k": "{needle}"}}')) | found


def test_metadata_text_keeps_the_words_of_its_strings() -> None:
    assert tokens.words(tokens.metadata_text('{"a":"x\\ny","b":"caf\\u00e9"}')) == [
        "a",
        "x",
        "y",
        "b",
        "café",
    ]


def test_folding_agrees_with_postgresql_lower(db: DB) -> None:
    """Every character the database's lower() turns into an ASCII word character is folded to it here too
    (else a row PostgreSQL matches could lack the needle's words)."""
    rows = db.fetch(
        "SELECT i, lower(chr(i)) AS low FROM generate_series(128, 1114111) i"
        " WHERE (i < 55296 OR i > 57343) AND lower(chr(i)) ~ '[A-Za-z0-9_]'"
    )
    for row in rows:
        assert tokens.fold(chr(row["i"])) == row["low"], hex(row["i"])
