"""Every query of our conformance tables parses with Grafana's own LogQL grammar (`@grafana/lezer-logql`,
npm, Apache-2.0: what Grafana's query editor uses), and a syntax error of ours is one for it too. Skips when
node or npm is missing or the package cannot be installed (offline)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from app.logql.errors import ParseError
from app.logql.parser import parse
from tests.logql.test_store import LOG_QUERIES as ARCHIVE_LOG_QUERIES
from tests.logql.test_store import METRIC_QUERIES as ARCHIVE_METRIC_QUERIES
from tests.routes.test_loki_query import LOG_QUERIES, METRIC_QUERIES

PACKAGE = "@grafana/lezer-logql@0.3.0"
CHECK = """
const { parser } = require("@grafana/lezer-logql");
const queries = JSON.parse(require("fs").readFileSync(0, "utf8"));
const errors = queries.map((q) => {
  let error = false;
  parser.parse(q).iterate({ enter: (n) => { if (n.type.isError) error = true; } });
  return error;
});
process.stdout.write(JSON.stringify(errors));
"""
OURS = [
    *(q for q, _ in LOG_QUERIES),
    *(q for q, _ in METRIC_QUERIES),
    *ARCHIVE_LOG_QUERIES,
    *ARCHIVE_METRIC_QUERIES,
    "vector(1)+vector(1)",
    'sum by (level, detected_level) (count_over_time({service_name="api"} | drop __error__[1m]))',
    'rate({app="foo"} |= "x" [1h30m] offset 5m)',
    'bytes_rate(({app="foo"} | json)[10s])',
    'quantile_over_time(0.99, {app="foo"} | unwrap latency [5m]) by (path)',
    'sum(rate({app="foo"}[1m])) by (a, b)',
    '{app="foo"} | json first="servers[0]" | drop a, b="x" | keep c | label_format dst=src',
]
SYNTAX_ERRORS = [
    '{foo="bar"} |= ',
    '{foo="bar"',
    "{foo=bar}",
    'rate({foo="bar"})',
    "sum(",
    '{a="b"} | json |',
]


@pytest.fixture(scope="module")
def lezer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed to run Grafana's LogQL grammar")
    home = tmp_path_factory.mktemp("lezer")
    installed = subprocess.run(
        [npm, "install", "--silent", "--no-audit", "--no-fund", PACKAGE],
        cwd=home, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if installed.returncode != 0:
        pytest.skip(f"cannot install {PACKAGE} from npm: {installed.stderr[-300:]}")
    (home / "check.cjs").write_text(CHECK)
    return home


def grammar_errors(home: Path, queries: list[str]) -> list[bool]:
    done = subprocess.run(
        ["node", "check.cjs"], cwd=home, input=json.dumps(queries), capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def test_every_query_we_answer_parses_with_grafanas_grammar(lezer: Path) -> None:
    for query in OURS:
        parse(query)
    errors = grammar_errors(lezer, OURS)
    assert [q for q, error in zip(OURS, errors, strict=True) if error] == []


def test_our_syntax_errors_are_errors_for_grafanas_grammar(lezer: Path) -> None:
    for query in SYNTAX_ERRORS:
        with pytest.raises(ParseError):
            parse(query)
    assert grammar_errors(lezer, SYNTAX_ERRORS) == [True] * len(SYNTAX_ERRORS)
