"""`python -m bench steps REV...`: the same HTTP arms against the server as it was at each git revision.

Each revision is checked out in a temporary git worktree and its `python -m app` is started from there;
the load generator, the data and the raw-COPY ceiling are this checkout's. A shared machine drifts over
minutes, so the revisions take turns (round robin, `REPEATS` rounds), every run is read against the
ceiling measured with it, and the report shows the median of the rounds.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench import http

ARMS = [
    http.Arm("b10-c32", "group", 10, False, 32),
    http.Arm("b10-c32-direct", "direct", 10, False, 32),
    http.Arm("b1000-gzip-c8", "group", 1000, True, 8),
    http.Arm("b1000-c1", "group", 1000, False, 1),
]
REPEATS = 3


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=http.ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as parent:
        path = Path(parent) / "checkout"
        _git("worktree", "add", "--detach", str(path), revision)
        try:
            yield path
        finally:
            _git("worktree", "remove", "--force", str(path))


def run(dsn: str, revisions: Sequence[str], warmup: float, duration: float, progress: Callable[[str], None],
        repeats: int = REPEATS) -> list[dict[str, Any]]:  # fmt: skip
    commits = [_git("rev-parse", "--short", revision) for revision in revisions]
    steps = [{"revision": c, "subject": _git("log", "-1", "--format=%s", c), "runs": []} for c in commits]
    with ExitStack() as stack:
        roots = [stack.enter_context(worktree(commit)) for commit in commits]
        for round_ in range(repeats):
            for step, root in zip(steps, roots):
                label = f"round {round_ + 1}/{repeats} {step['revision']}"
                step["runs"].append(
                    http.suite(
                        dsn,
                        ARMS,
                        warmup,
                        duration,
                        lambda text, label=label: progress(f"{label} {text}"),
                        server_root=root,
                    )
                )
    return steps
