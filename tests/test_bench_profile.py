"""bench/profile.py: py-spy's collapsed stacks charged to layers and to leaf functions."""

from __future__ import annotations

from bench.profile import layer_of, summarize

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
