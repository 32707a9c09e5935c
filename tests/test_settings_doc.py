from __future__ import annotations

from pydantic import Field

from app import settings_doc
from app.config import Settings


def test_every_setting_says_what_it_means() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert not missing, (
        f"settings without a docstring: {missing}; in app/config.py, put a string literal on the line right"
        " after each field saying what it means, its unit and when it matters"
    )


def table(page: str) -> dict[str, tuple[str, str]]:
    rows = [line.split(" | ") for line in page.splitlines() if line.startswith("| `")]
    return {name.strip("| `"): (default, meaning.removesuffix(" |")) for name, default, meaning in rows}


def test_the_page_has_a_row_per_setting_with_its_default_and_meaning() -> None:
    rows = table(settings_doc.markdown())
    assert set(rows) == {name.upper() for name in Settings.model_fields}
    assert rows["MAX_BATCH_SIZE"][0] == "`1000`"
    assert rows["DB_ACQUIRE_TIMEOUT"][0] == "`5`"  # a float that is whole, as .env.example writes it
    assert rows["INGEST_MODE"][0] == "`group`"
    assert rows["LOGSAVE_DATA_DIR"][0] == "`.data`"
    assert rows["DATABASE_URL"][0] == "unset" and rows["DATABASE_PASSWORD"][0] == "empty"
    # A docstring's line breaks are the code's, not the page's.
    assert rows["BODY_MEMORY_LIMIT"][1].startswith("Bytes of request bodies one worker holds at once")
    assert "\n" not in rows["BODY_MEMORY_LIMIT"][1] and "  " not in rows["BODY_MEMORY_LIMIT"][1]
    assert settings_doc.REGENERATE in settings_doc.markdown()


def test_the_text_names_every_setting_with_its_default() -> None:
    text = settings_doc.text()
    assert "MAX_BODY_BYTES  (default: 10485760)\n    Most bytes in one request body" in text
    assert all(f"\n{name.upper()}  (default: " in f"\n{text}" for name in Settings.model_fields)
    assert max(len(line) for line in text.splitlines()) <= 100


class Odd(Settings):
    odd_choice: str = Field("a|b")
    """Either | or; half of 1.5 is 0.75."""
    odd_ratio: float = 0.75
    """A fraction."""


def test_a_pipe_does_not_break_the_table() -> None:
    rows = table(settings_doc.markdown(Odd))
    assert rows["ODD_CHOICE"] == ("`a\\|b`", "Either \\| or; half of 1.5 is 0.75.")
    assert rows["ODD_RATIO"][0] == "`0.75`"
