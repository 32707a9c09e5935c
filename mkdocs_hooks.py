"""mkdocs hooks (mkdocs.yml): the pages in docs/ link to files beside docs/ as GitHub shows them
(`../results/REPORT.md`, `../deploy/SCALING.md`, the web view's screenshots). The site takes those files in
under their repository paths and points the links there (and theirs back into docs/), so the same links work
on GitHub and in the site."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

# A Markdown link's or image's target, up to an #anchor.
LINK = re.compile(r"(\]\()([^)\s#]+)")


def _outside(docs: Path, page: Path, target: str) -> str | None:
    """The repository path a link leads to when it leaves docs/ for a file of the repository, else None."""
    if ":" in target:  # https:, mailto:
        return None
    path = (page.parent / target).resolve()
    root = docs.parent
    if docs in path.parents or root not in path.parents or not path.is_file():
        return None
    return path.relative_to(root).as_posix()


def on_files(files: Files, config: Any) -> Files:
    docs = Path(config.docs_dir).resolve()
    pending, taken = list(docs.rglob("*.md")), set()
    while pending:
        page = pending.pop()
        for _, target in LINK.findall(page.read_text()):
            found = _outside(docs, page, target)
            if found and found not in taken:
                taken.add(found)
                files.append(File(found, str(docs.parent), config.site_dir, config.use_directory_urls))
                if found.endswith(".md"):  # its own links come along (REPORT.md's plots)
                    pending.append(docs.parent / found)
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    docs = Path(config.docs_dir).resolve()
    source = Path(page.file.abs_src_path).resolve()
    here = posixpath.dirname(page.file.src_uri) or "."

    def local(match: re.Match[str]) -> str:
        target = match.group(2)
        if ":" in target:
            return match.group(0)
        path = (source.parent / target).resolve()
        if docs in path.parents:  # a page of docs/, at its path under docs/ in the site
            site = path.relative_to(docs).as_posix()
        else:  # a file taken in, at its repository path
            site = _outside(docs, source, target)
            if site is None:
                return match.group(0)
        return match.group(1) + posixpath.relpath(site, here)

    return LINK.sub(local, markdown)
