"""Archived days: the archive pass writes a search filter per row group beside each Parquet file, GET /logs
reads only the row groups that may hold a needle, and answers exactly as without the index."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.query import parse
from app.search import bloom, build, lookup
from app.storage import archive
from tests.storage.test_archive import DAYS, archive_pass, drop_days, make_day, make_store
from tests.support import DB, make_settings


@pytest.fixture
def archived(db: DB, database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, Path]]:
    store = make_store(db, tmp_path)
    make_day(db, DAYS[0], 12_000, first=2_501)  # several row groups
    archive_pass(db, store)
    root = tmp_path / "archive"
    with (
        TestClient(create_app(make_settings(database_url, archive_url=str(root)))) as on,
        TestClient(create_app(make_settings(database_url, archive_url=str(root), search_index=False))) as off,
    ):
        yield on, off, root
    drop_days(db)


def test_archived_needles_read_only_their_row_groups(archived: tuple[TestClient, TestClient, Path]) -> None:
    on, off, root = archived
    start = datetime(DAYS[0].year, DAYS[0].month, DAYS[0].day, tzinfo=UTC)
    window = {
        "since": (start - timedelta(days=3)).isoformat(),
        "until": (start + timedelta(days=4)).isoformat(),
    }
    needles = [
        {"q": "message 7777 "},
        {"q": '"MESSAGE 7777"'},  # a quoted phrase: whole words
        {"q": "message 123"},  # a fragment: every row group is read
        {"q": "message 99999 "},  # in no row
        {"meta.region": "eu-2", "limit": "5"},
        {"q": "message 1300 ", "meta.region": "eu-1"},
    ]
    for needle in needles:
        a = on.get("/logs", params={**window, **needle})
        b = off.get("/logs", params={**window, **needle})
        assert a.status_code == b.status_code == 200
        assert a.content == b.content, needle
    assert [
        log["message"].split(" Ü")[0]
        for log in on.get("/logs", params={**window, **needles[0]}).json()["logs"]
    ] == ["message 7777"]
    # The filters beside the files name only some of the row groups for a needle.
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))
    probes = [bloom.probe(e) for e in lookup.entries(parse({"q": ["message 7777 "]}))]
    groups = may_hold = 0
    for path in files:
        row_groups = pq.read_metadata(root / path).num_row_groups
        filters = build.read_sidecar((root / archive.search_file(path)).read_bytes(), row_groups)
        assert filters is not None
        groups += row_groups
        may_hold += sum(bloom.contains(f, probes) for f in filters)
    assert groups >= 3
    assert may_hold == 1


def test_a_torn_sidecar_is_ignored() -> None:
    whole = build.sidecar([b"\x00" * 8, b"\xff" * 16])
    assert build.read_sidecar(whole, 2) == [b"\x00" * 8, b"\xff" * 16]
    assert build.read_sidecar(whole[:-1], 2) is None
    assert build.read_sidecar(whole, 3) is None
    assert build.read_sidecar(b"", 0) is None


def test_without_the_index_the_archive_writes_no_filters(db: DB, database_url: str, tmp_path: Path) -> None:
    store = make_store(db, tmp_path)
    make_day(db, DAYS[0], 6_000, first=2_501)
    archive_pass(db, store, search=False)
    root = tmp_path / "archive"
    assert list(root.rglob("*.parquet")) and not list(root.rglob("*.search"))
    start = datetime(DAYS[0].year, DAYS[0].month, DAYS[0].day, tzinfo=UTC)
    window = {
        "since": (start - timedelta(days=1)).isoformat(),
        "until": (start + timedelta(days=2)).isoformat(),
    }
    try:
        with (
            TestClient(create_app(make_settings(database_url, archive_url=str(root)))) as on,
            TestClient(
                create_app(make_settings(database_url, archive_url=str(root), search_index=False))
            ) as off,
        ):
            for needle in ({"q": "message 4444 "}, {"meta.region": "eu-2", "limit": "5"}):
                a, b = (
                    on.get("/logs", params={**window, **needle}),
                    off.get("/logs", params={**window, **needle}),
                )
                assert a.status_code == b.status_code == 200
                assert a.content == b.content and a.json()["logs"], needle
    finally:
        drop_days(db)
