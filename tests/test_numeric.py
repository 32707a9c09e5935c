"""The numeric codec against PostgreSQL's own parsing and printing of the same values."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import asyncpg
import pytest

from app import numeric

VALUES: list[float | int | Decimal] = [
    0.0, 0.005, 0.1, 1.0, 7, 12.346, 100.0, 9999.0, 10000.0, 10000.5, 123456.789, 9_999_999.999, -7.5,
    Decimal("-3.14159"), Decimal("1E+20"), Decimal("0.00001234"), Decimal("123456789012345678901234567890.123"),
    Decimal("0.000"), Decimal("100.100"),
]  # fmt: skip
VALUES += [round(random.Random(3).uniform(0, 9_999_999.999), n % 4) for n in range(300)]


def as_decimal(value: float | Decimal) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


async def round_trips(url: str) -> list[tuple[object, str, str, Decimal, Decimal]]:
    conn = await asyncpg.connect(url)
    try:
        await conn.set_type_codec(
            "numeric", schema="pg_catalog", encoder=numeric.encode, decoder=numeric.decode, format="binary"
        )
        out = []
        for value in VALUES:
            text = str(as_decimal(value))
            sent = await conn.fetchval("SELECT $1::numeric::text", value)  # our encoder -> PostgreSQL
            printed = await conn.fetchval("SELECT $1::text::numeric::text", text)
            received = await conn.fetchval("SELECT $1::text::numeric", text)  # PostgreSQL -> our decoder
            out.append((value, sent, printed, received, as_decimal(value)))
        return out
    finally:
        await conn.close()


def test_values_survive_the_trip_both_ways(database_url: str) -> None:
    for value, sent, printed, received, expected in asyncio.run(round_trips(database_url)):
        assert Decimal(sent) == expected, value
        assert received == expected and str(received) == printed, value


def test_floats_are_encoded_by_their_shortest_form_not_their_binary_value() -> None:
    assert numeric.encode(12.346) == numeric.encode(Decimal("12.346"))


def test_non_finite_values_are_refused() -> None:
    with pytest.raises(ValueError, match="numeric cannot hold"):
        numeric.encode(float("inf"))


def test_the_short_path_encodes_as_the_general_one() -> None:
    # Every shape of 0 <= v < 10000 with up to 3 decimals (integer part zero or not; 0-3 decimals;
    # trailing zeros), against _encode_thousandths, which the round trips above check against PostgreSQL.
    rng = random.Random(11)
    thousandths = [0, 1, 10, 100, 999, 1000, 1001, 1010, 1100, 9_999_999, 5_000_000, 9_999_000]
    thousandths += [rng.randrange(10_000_000) for _ in range(20_000)]
    for n in thousandths:
        value = n / 1000
        assert numeric.encode(value) == numeric._encode_thousandths(n), value
    assert numeric.encode(10000.0) == numeric._encode_thousandths(10_000_000)
