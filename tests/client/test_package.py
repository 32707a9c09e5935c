"""The client installs and runs on its own: no dependencies, nothing of the server imported."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

CLIENT = Path(__file__).parent.parent.parent / "client"


def test_the_client_declares_no_dependencies() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "logsave-client"
    assert not project.get("dependencies")


def test_importing_the_client_imports_only_the_standard_library() -> None:
    # What importing logsave adds to what the interpreter had loaded at start (site's .pth files load some).
    check = (
        "import sys; before = set(sys.modules); import logsave; "
        "added = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(added - set(sys.stdlib_module_names) - {'logsave'}))"
    )
    result = subprocess.run([sys.executable, "-I", "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
