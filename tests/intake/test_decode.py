from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import pytest
import zstandard

from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from app.intake.decode import check_content_type, decode

BODY = b'{"logs": [{"level": "INFO", "service": "api", "message": "hello"}]}' * 50
LIMIT = 1024 * 1024


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "payload"),
    [
        (None, BODY),
        ("identity", BODY),
        ("gzip", gzip.compress(BODY)),
        ("GZIP", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),
        ("deflate", raw_deflate(BODY)),
        ("zstd", zstandard.compress(BODY)),
    ],
)
def test_decodes_each_supported_encoding(encoding: str | None, payload: bytes) -> None:
    assert decode(payload, encoding, LIMIT) == BODY


def test_concatenated_gzip_members_are_all_decoded() -> None:
    assert decode(gzip.compress(BODY) + gzip.compress(BODY), "gzip", LIMIT) == BODY + BODY


def test_concatenated_zstd_frames_are_all_decoded() -> None:
    assert decode(zstandard.compress(BODY) * 2, "zstd", LIMIT) == BODY * 2


@pytest.mark.parametrize(
    ("encoding", "payload", "message"),
    [
        ("gzip", gzip.compress(BODY)[:-12], "truncated"),
        ("gzip", b"not gzip at all", "not valid gzip"),
        ("gzip", gzip.compress(BODY) + b"trailing junk", "not valid gzip"),
        ("deflate", zlib.compress(BODY)[:-8], "truncated"),
        ("zstd", zstandard.compress(BODY)[:-4], "truncated"),
        ("zstd", b"\x00\x01garbage", "not valid zstd"),
    ],
)
def test_corrupt_or_truncated_data_is_a_bad_request(encoding: str, payload: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        decode(payload, encoding, LIMIT)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("zstd", zstandard.compress)],
)
def test_a_small_bomb_stops_at_the_cap(encoding: str, compress: Callable[[bytes], bytes]) -> None:
    bomb = compress(b"0" * (64 * 1024 * 1024))
    assert len(bomb) < 200_000
    with pytest.raises(PayloadTooLarge, match="decompressed body exceeds the limit of 1048576 bytes"):
        decode(bomb, encoding, LIMIT)


def test_output_exactly_at_the_cap_is_accepted() -> None:
    data = b"x" * LIMIT
    assert decode(gzip.compress(data), "gzip", LIMIT) == data


def test_wire_size_over_the_cap_is_too_large() -> None:
    with pytest.raises(PayloadTooLarge, match="the limit is 1048576"):
        decode(b"x" * (LIMIT + 1), None, LIMIT)


@pytest.mark.parametrize("encoding", ["br", "compress", "gzip, br"])
def test_unknown_encoding_is_unsupported(encoding: str) -> None:
    with pytest.raises(UnsupportedMediaType, match="unsupported Content-Encoding"):
        decode(BODY, encoding, LIMIT)


@pytest.mark.parametrize(
    "header",
    [
        None,  # no Content-Type at all is read as JSON (AWS's event generator sends none)
        "",
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
    ],
)
def test_json_content_types_are_accepted(header: str | None) -> None:
    check_content_type(header)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("text/plain", "unsupported Content-Type 'text/plain'"),
        ("application/x-www-form-urlencoded", "unsupported Content-Type"),
        ("application/json; charset=latin-1", "unsupported charset"),
    ],
)
def test_other_content_types_are_refused(header: str | None, message: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=message):
        check_content_type(header)
