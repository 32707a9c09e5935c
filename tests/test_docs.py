"""README.md and docs/: the configuration page is the one the code generates, and every relative link (and
its #anchor, with GitHub's heading ids) in them and in the other hand-written pages leads somewhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from app import settings_doc

ROOT = Path(__file__).parent.parent
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "deploy").glob("*.md")),
    ROOT / "client" / "README.md",
]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
HTML = re.compile(r"""\b(?:href|src)=["']([^"']+)["']""")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def prose(page: Path) -> str:
    """The page without code: a link-like text in a code block or span is not a link."""
    return CODE.sub("", FENCE.sub("", page.read_text()))


def links(page: Path) -> list[str]:
    text = prose(page)
    return [*LINK.findall(text), *REFERENCE.findall(text), *HTML.findall(text)]


def slug(heading: str) -> str:
    """GitHub's id for a heading: link text kept, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return found


def test_slugs_are_githubs() -> None:
    assert (
        slug("Send logs from rsyslog / Filebeat / Fluent Bit")
        == "send-logs-from-rsyslog--filebeat--fluent-bit"
    )
    assert slug("`GET /logs/stream`: live") == "get-logsstream-live"
    assert slug("The [web view](web-view.md)") == "the-web-view"
    assert slug("API keys_and limits") == "api-keys_and-limits"


def test_duplicate_headings_are_numbered(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A\n\n## Example\n\n```\n# not a heading\n```\n\n## Example\n")
    assert anchors(page) == {"a", "example", "example-1"}


def test_code_is_not_a_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text('[a](a.md) `[b](b.md)`\n\n```\n[c](c.md)\n```\n\n[d]: d.md\n<img src="e.png">\n')
    assert links(page) == ["a.md", "d.md", "e.png"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for link in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link, re.IGNORECASE):  # https:, mailto:: not ours to check here
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists() or ROOT.resolve() not in (target, *target.parents):
            broken.append(f"{link}: no such file in the repository")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: {target.name} has no heading with the id {anchor!r}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_front_page_keeps_the_two_commands() -> None:
    # What a newcomer copies first; .ci/run runs the second one as it is written here.
    readme = (ROOT / "README.md").read_text()
    assert "pip install -r requirements.txt && python -m app\n" in readme
    assert "pip install -r requirements-dev.txt && pytest\n" in readme


def test_the_configuration_page_is_what_the_code_generates() -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "app", "config", "--markdown"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == generated, (
        f"docs/configuration.md differs from app/config.py: run `{settings_doc.REGENERATE}`"
    )


def test_the_config_command_prints_every_setting() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "app", "config"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert printed == settings_doc.text()
    assert "RETENTION_DAYS  (default: 30)\n    Whole UTC days of logs kept" in printed
