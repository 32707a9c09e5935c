"""A blocked bloom filter: each entry sets up to 6 bits inside one 64-bit word chosen by its hash.

One word per entry keeps a lookup to one 8-byte slice of the filter, which PostgreSQL reads with
`substring(bloom …)` (from a TOASTed value stored uncompressed, only the chunk holding it) and tests with one
AND, and which Python tests the same way for archived parts. BITS_PER_ENTRY bits of filter per distinct entry
with 6 bits in a word (three pairs: up to 6) leave about 1 block in 300 falsely matching one entry (measured in
tests/search/test_bloom.py); a needle of two entries, far fewer.

The hash is CRC-32 of the entry's UTF-8 (zlib, C speed, the same everywhere), spread by two multiplications:
one picks the word, the other the bits. Words are stored big-endian, so PostgreSQL reads a word as the bigint
`('x' || encode(slice, 'hex'))::bit(64)::bigint`.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Iterable

BITS_PER_ENTRY = 16
_M64 = (1 << 64) - 1
_K1 = 0x9E3779B97F4A7C15
_K2 = 0xC2B2AE3D27D4EB4F
# Two bits from 12 bits of hash, looked up (three lookups make an entry's BITS = 6 bits).
_PAIRS = [(1 << (n & 63)) | (1 << (n >> 6)) for n in range(1 << 12)]
# Entries seen recently (a block's common words recur in every block): their word hash and mask.
_CACHE: dict[str, tuple[int, int]] = {}
_CACHE_SIZE = 200_000


def probe(entry: str) -> tuple[int, int]:
    """(word hash, mask): the entry's word is `word hash % words`, and all of `mask`'s bits are set in it."""
    known = _CACHE.get(entry)
    if known is not None:
        return known
    h = zlib.crc32(entry.encode())
    y = (h * _K2) & _M64
    mask = _PAIRS[y & 0xFFF] | _PAIRS[(y >> 12) & 0xFFF] | _PAIRS[(y >> 24) & 0xFFF]
    found = (((h * _K1) & _M64) >> 32, mask)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.clear()
    _CACHE[entry] = found
    return found


def size(entries: int, bits: int = BITS_PER_ENTRY) -> int:
    """Words for a filter of this many distinct entries."""
    return max(1, (entries * bits + 63) // 64)


def build(entries: Iterable[str], count: int) -> bytes:
    """The filter of `entries` (`count` of them, distinct)."""
    return encoded(map(str.encode, entries), count)


def encoded(entries: Iterable[bytes], count: int, bits: int = BITS_PER_ENTRY) -> bytes:
    """The filter of these UTF-8 encoded entries (`count` of them, distinct) at `bits` bits per entry: what
    `probe` finds, computed inline (a block's entries are mostly seen once, so `probe`'s cache and calls
    would only cost)."""
    n = size(count, bits)
    words = [0] * n
    pairs = _PAIRS
    for h in map(zlib.crc32, entries):
        y = h * _K2
        words[(((h * _K1) & _M64) >> 32) % n] |= (
            pairs[y & 0xFFF] | pairs[(y >> 12) & 0xFFF] | pairs[(y >> 24) & 0xFFF]
        )
    return struct.pack(f">{n}Q", *words)


class Growing:
    """A filter of entries added over many calls, their number unknown up front (a day's summary, built block
    by block): `words` words at first (rounded up to a power of two), halved at the end while what was added
    still fits at `bits` bits per entry. Halving ORs the two halves together: an entry's word h % n lands on
    h % (n / 2), exactly where a lookup of the smaller filter looks."""

    def __init__(self, words: int) -> None:
        self._n = 1 << max(0, (words - 1).bit_length())
        self._words = array("Q", bytes(8 * self._n))
        self._entries = 0

    def add(self, entries: Iterable[str], count: int) -> None:
        n, words = self._n, self._words
        for entry in entries:
            h, mask = probe(entry)
            words[h % n] |= mask
        self._entries += count

    def done(self, bits: int) -> bytes:
        if sys.byteorder == "little":
            self._words.byteswap()
        data, n = self._words.tobytes(), self._n
        wanted = max(1, (self._entries * bits + 63) // 64)
        while n > 1 and n // 2 >= wanted:
            n //= 2
            half = 8 * n
            data = (int.from_bytes(data[:half]) | int.from_bytes(data[half:])).to_bytes(half)
        return data


def contains(bloom: bytes, probes: Iterable[tuple[int, int]]) -> bool:
    """Whether every probed entry may be in the filter (False: certainly not)."""
    n = len(bloom) // 8
    for h, mask in probes:
        (word,) = struct.unpack_from(">Q", bloom, (h % n) * 8)
        if word & mask != mask:
            return False
    return True


def signed(mask: int) -> int:
    """A mask as PostgreSQL's bigint holds it."""
    return mask - (1 << 64) if mask >= 1 << 63 else mask
