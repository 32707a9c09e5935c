"""A binary codec for PostgreSQL `numeric`, registered on the app's connections.

asyncpg turns a float bound for a numeric column into an exact Decimal of its binary value (12.346 becomes
12.3459999999999991526...) before encoding it, which made duration_ms the most expensive column of a COPY
(a third of its time, measured with the bench). This encodes the float's shortest decimal form instead,
which is also what the column rounds to.

Wire format (PostgreSQL's numeric_send): int16 ndigits, int16 weight, uint16 sign, int16 dscale, then
ndigits base-10000 digits, most significant first; value = sum(digit * 10000 ** (weight - i)).
"""

from __future__ import annotations

import struct
from decimal import Decimal

_POSITIVE, _NEGATIVE, _NAN = 0x0000, 0x4000, 0xC000
_HEADER = struct.Struct("!hhHh")
# Header + k digits, for the k a value below 1e12 with 3 decimals can have.
_SHORT = [struct.Struct(f"!hhHh{k}H") for k in range(6)]


# Values 0 <= v < 10000 with at most 3 decimals (nearly every duration_ms): one or two base-10000 digits,
# packed directly. Same bytes as _encode_thousandths (tests/test_numeric.py checks every such value's form).
_ONE, _TWO = _SHORT[1].pack, _SHORT[2].pack
_ZERO = _SHORT[0].pack(0, 0, _POSITIVE, 0)


def encode(value: float | Decimal) -> bytes:
    if type(value) is float and 0 <= value < 10000:
        thousandths = round(value * 1000)
        if thousandths / 1000 == value:
            integer, fraction = divmod(thousandths, 1000)
            if not fraction:
                return _ONE(1, 0, _POSITIVE, 0, integer) if integer else _ZERO
            dscale = 3 if fraction % 10 else 2 if fraction % 100 else 1
            if integer:
                return _TWO(2, 0, _POSITIVE, dscale, integer, fraction * 10)
            return _ONE(1, -1, _POSITIVE, dscale, fraction * 10)
    if type(value) is float and -1e12 < value < 1e12:
        thousandths = round(value * 1000)
        if thousandths / 1000 == value:
            return _encode_thousandths(thousandths)
    decimal = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not decimal.is_finite():
        if decimal.is_nan():
            return _HEADER.pack(0, 0, _NAN, 0)
        raise ValueError(f"numeric cannot hold {value!r}")
    sign, digits, exponent = decimal.as_tuple()
    assert isinstance(exponent, int)
    dscale = max(0, -exponent)
    text = "".join(map(str, digits))
    # Pad so that the decimal point falls on a 4-digit group boundary, then cut into base-10000 digits.
    integer_digits = len(text) + exponent  # digits before the decimal point (may be <= 0)
    left_pad = (-integer_digits) % 4
    text = "0" * left_pad + text
    integer_groups = (integer_digits + left_pad) // 4
    text += "0" * ((-len(text)) % 4)
    groups = [int(text[i : i + 4]) for i in range(0, len(text), 4)]
    weight = integer_groups - 1
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        return _HEADER.pack(0, 0, _POSITIVE, dscale)
    return _HEADER.pack(len(groups), weight, _NEGATIVE if sign else _POSITIVE, dscale) + struct.pack(
        f"!{len(groups)}H", *groups
    )


def _encode_thousandths(n: int) -> bytes:
    """The common case, a float with at most 3 decimals (every duration_ms): integer arithmetic only."""
    sign = _NEGATIVE if n < 0 else _POSITIVE
    integer, fraction = divmod(abs(n), 1000)
    if integer < 10000:
        groups = [integer] if integer else []
    else:
        groups = []
        while integer:
            integer, group = divmod(integer, 10000)
            groups.append(group)
        groups.reverse()
    weight = len(groups) - 1
    dscale = 0
    if fraction:
        groups.append(fraction * 10)  # .abc is the base-10000 digit abc0
        dscale = 3 if fraction % 10 else 2 if fraction % 100 else 1
    while groups and groups[-1] == 0:
        groups.pop()
    return _SHORT[len(groups)].pack(
        len(groups), weight if groups else 0, sign if groups else _POSITIVE, dscale, *groups
    )


def decode(data: bytes) -> Decimal:
    ndigits, weight, sign, dscale = _HEADER.unpack_from(data)
    if sign == _NAN:
        return Decimal("NaN")
    text = "".join(f"{digit:04d}" for digit in struct.unpack_from(f"!{ndigits}H", data, _HEADER.size))
    exponent = 4 * (weight + 1) - len(text)
    # Show exactly dscale decimals, as PostgreSQL does: pad with zeros, or drop the zeros of the last group.
    if exponent > -dscale:
        text += "0" * (exponent + dscale)
    elif exponent < -dscale:
        text = text[: len(text) - (-dscale - exponent)]
    digits = tuple(int(c) for c in text.lstrip("0") or "0")
    return Decimal((1 if sign == _NEGATIVE else 0, digits, -dscale))
