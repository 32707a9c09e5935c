"""Every setting of app/config.py's Settings as documentation, from the fields' own docstrings:
`python -m app config` prints them as text, `python -m app config --markdown` as docs/configuration.md."""

from __future__ import annotations

import textwrap
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from app.config import Settings

# The command that writes the page: named in the page itself and in the test that compares the two.
REGENERATE = "python -m app config --markdown > docs/configuration.md"

HEADER = f"""\
# Configuration

log-save-server reads these settings once at start-up from the environment, or from a `.env` file in the
working directory (the environment wins); `.env.example` lists them all with their defaults. A value that
does not fit its setting stops the server at start-up, naming the setting.

`python -m app config` prints the same list on a terminal. This page is generated from the docstrings of
`Settings` in `app/config.py`: edit those, then run `{REGENERATE}`.
"""


def env_name(name: str) -> str:
    return name.upper()


def default(field: FieldInfo) -> str:
    """The default as one would write it in `.env`; `unset` for None (the meaning says what follows)."""
    value: Any = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, Path):
        value = str(value)
    return str(value) if value != "" else "empty"


def meaning(field: FieldInfo) -> str:
    # Docstrings wrap at the code's line length; the documentation flows as one paragraph.
    return " ".join((field.description or "").split())


def text(settings: type[BaseSettings] = Settings, width: int = 100) -> str:
    lines = []
    for name, field in settings.model_fields.items():
        lines.append(f"{env_name(name)}  (default: {default(field)})")
        lines += textwrap.wrap(meaning(field), width, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(lines) + "\n"


def markdown(settings: type[BaseSettings] = Settings) -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in settings.model_fields.items():
        value = default(field)
        shown = f"`{value}`" if value not in ("unset", "empty") else value
        rows.append(f"| `{env_name(name)}` | {_cell(shown)} | {_cell(meaning(field))} |")
    return HEADER + "\n" + "\n".join(rows) + "\n"


def _cell(value: str) -> str:
    # GitHub's tables end a cell at a bare `|`, even inside a code span.
    return value.replace("|", "\\|")
