"""bench/profile.py: py-spy's collapsed stacks charged to layers and to leaf functions; finding py-spy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.profile import layer_of, summarize

ROOT = Path(__file__).parent.parent
SITE = "/usr/lib/python3.11/site-packages"
RAW = f"""\
run (/usr/lib/python3.11/asyncio/runners.py:118);__call__ (/srv/app/routes/ingest.py:90);parse (/srv/app/intake/rows.py:120) 30
run (/usr/lib/python3.11/asyncio/runners.py:118);parse (/srv/app/intake/rows.py:120);dumps (/usr/lib/python3.11/json/__init__.py:231) 10
run (/usr/lib/python3.11/asyncio/runners.py:118);_run (/srv/app/intake/writer.py:200);copy_records_to_table ({SITE}/asyncpg/connection.py:1) 20
run (/usr/lib/python3.11/asyncio/runners.py:118) 15
run (/usr/lib/python3.11/asyncio/runners.py:118);send ({SITE}/uvicorn/protocols/http/httptools_impl.py:500) 5
<module> (/srv/somewhere/else.py:1) 2
"""


def test_samples_go_to_the_deepest_known_layer() -> None:
    total, layers, leaves = summarize(RAW)
    assert total == 82
    # json.dumps is not a layer of its own: it counts for the parse that called it.
    assert layers["parse, validate, build rows"] == 40
    assert layers["COPY: asyncpg's encoding and protocol"] == 20
    assert layers["event loop (asyncio, uvloop)"] == 15
    assert layers["HTTP server (uvicorn, httptools)"] == 5
    assert layers["other"] == 2
    assert leaves["app/intake/rows.py parse"] == 30 and leaves["json/__init__.py dumps"] == 10
    assert leaves["asyncpg/connection.py copy_records_to_table"] == 20


def test_unknown_stacks_are_other() -> None:
    assert layer_of(["main (/tmp/x.py:1)"]) == "other"


# --- finding py-spy: a venv used without activation (its bin/ not on PATH), as scripts and cron use it ---


def _venv(root: Path, with_py_spy: bool) -> Path:
    """A venv-like bin/: `python` there is this interpreter (sys.executable is then that path), and
    `py-spy` beside it only if asked for."""
    bin_dir = root / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    if with_py_spy:
        _fake_py_spy(bin_dir)
    return bin_dir / "python"


def _fake_py_spy(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "py-spy"
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return path


def _bare_path() -> str:
    """PATH with no py-spy on it."""
    path = os.pathsep.join(["/usr/bin", "/bin"])
    assert shutil.which("py-spy", path=path) is None
    return path


def _found(python: Path, path: str) -> str:
    code = "from bench.profile import py_spy; print(py_spy())"
    done = subprocess.run(
        [str(python), "-c", code],
        check=False,
        cwd=ROOT,
        env={"PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_py_spy_beside_the_python_is_found_before_path(tmp_path: Path) -> None:
    python = _venv(tmp_path, with_py_spy=True)
    on_path = _fake_py_spy(tmp_path / "elsewhere")
    path = os.pathsep.join([str(on_path.parent), _bare_path()])
    assert _found(python, path) == str(python.parent / "py-spy")
    (python.parent / "py-spy").unlink()
    assert _found(python, path) == str(on_path)
    assert _found(python, _bare_path()) == "None"


def test_a_quick_run_without_py_spy_skips_the_profile_suite(tmp_path: Path, database_url: str) -> None:
    python = _venv(tmp_path, with_py_spy=False)
    env = {"PATH": _bare_path(), "DATABASE_URL": database_url, "BENCH_DATABASE_NAME": "logs_bench_test"}
    out = tmp_path / "out"
    quick = subprocess.run(
        [str(python), "-m", "bench", "profile", "--quick", "--out", str(out)],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert quick.returncode == 0, quick.stderr
    assert f"profile suite skipped: py-spy is neither beside {python} nor on PATH" in quick.stdout
    assert not (out / "profile.json").exists()
    # A full run needs the profile: it says so before measuring anything.
    full = subprocess.run(
        [str(python), "-m", "bench", "--out", str(out)],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert full.returncode == 2 and "py-spy is not installed" in full.stderr
    assert list(out.iterdir()) == []
