"""A quoted phrase's regex means, in PostgreSQL and in DuckDB alike, what the index's tokenizer says (the
Python reference `phrase.matches`), for random Unicode text."""

from __future__ import annotations

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.search import phrase, tokens
from tests.support import DB

# Random text, with the characters where case folding and word boundaries are tricky over-represented.
TRICKY = "kKKİiIıßẞſsSé\u0301_-. \n0٣"
text = st.text(st.one_of(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                         st.sampled_from(TRICKY)), max_size=30)  # fmt: skip


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """Messages, and a phrase: often consecutive words of one of them (a match), else random words."""
    messages = draw(st.lists(text, min_size=1, max_size=8))
    found = tokens.words(draw(st.sampled_from(messages)))
    if found and draw(st.booleans()):
        start = draw(st.integers(0, len(found) - 1))
        words = found[start : draw(st.integers(start + 1, min(len(found), start + 3)))]
    else:
        words = tokens.words(draw(text)) or ["k"]
    return messages, words


def test_a_quoted_value_is_a_phrase() -> None:
    assert phrase.parse('"Connection  RESET"') == ["connection", "reset"]
    assert phrase.parse("connection reset") is None
    assert phrase.parse('"') is None
    assert phrase.parse('"--"') == []
    assert phrase.matches("ERR: connection-Reset by peer", ["connection", "reset"])
    assert not phrase.matches("connections reset", ["connection", "reset"])
    assert phrase.matches("\u212aelvin", ["kelvin"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cases())
def test_postgresql_and_duckdb_agree_with_the_tokenizer(db: DB, case: tuple[list[str], list[str]]) -> None:
    messages, words = case
    expected = [phrase.matches(m, words) for m in messages]
    rows = db.fetch(
        "SELECT m ~ $2 AS hit FROM unnest($1::text[]) WITH ORDINALITY AS t(m, i) ORDER BY i",
        messages,
        phrase.postgres(words),
    )
    assert [r["hit"] for r in rows] == expected
    duck = duckdb.execute(
        "SELECT regexp_matches(m, ?) FROM unnest(?) WITH ORDINALITY AS t(m, i) ORDER BY i",
        [phrase.duckdb(words), messages],
    ).fetchall()
    assert [r[0] for r in duck] == expected
