"""RFC 6587: syslog messages on a stream (TCP, TLS), framing detected per message.

* Octet counting, `MSG-LEN SP SYSLOG-MSG` (rsyslog's `TCP_Framing="octet-counted"`, RFC 5425 over TLS,
  `logger --octet-count`): a count of 1 to 10 digits, a space, and then a `<` (every syslog message starts
  with its PRI; checking it keeps a plain line that happens to start with a number, `200 OK`, from being
  read as a count that swallows the lines after it).
* Non-transparent framing: the message ends at LF (most senders) or NUL (Python's SysLogHandler over TCP
  sends `<PRI>message` + NUL); a CR before the LF is dropped.

A message longer than `max_message` is cut there and flagged truncated; the rest of it is read and thrown
away as it arrives, so no count (not even 9,999,999,999) makes the framer hold more than `max_message`
bytes and a little. Empty lines are skipped.
"""

from __future__ import annotations

import re

# (message, truncated)
Frame = tuple[bytes, bool]

_COUNT = re.compile(rb"([1-9][0-9]{0,9}) ")
_END = re.compile(rb"[\n\x00]")
# The longest prefix that could still become `COUNT SP <`: ten digits, a space and the `<`.
_UNDECIDED = 12


class Framer:
    """One stream's framing state: `feed` it bytes as they arrive, take the complete messages."""

    __slots__ = ("buffer", "discarding_line", "max_message", "skip")

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self.buffer = bytearray()
        # Bytes of an over-long octet-counted message still to throw away.
        self.skip = 0
        # Throwing away the rest of an over-long line, up to its terminator.
        self.discarding_line = False

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self.buffer
        buffer += data
        frames: list[Frame] = []
        pos = 0
        size = len(buffer)
        limit = self.max_message
        while pos < size:
            if self.skip:
                taken = min(self.skip, size - pos)
                pos += taken
                self.skip -= taken
                continue
            if self.discarding_line:
                found = _END.search(buffer, pos)
                if found is None:
                    pos = size
                    break
                pos = found.end()
                self.discarding_line = False
                continue
            first = buffer[pos]
            if first in b"\n\r\x00":
                pos += 1
                continue
            if 0x31 <= first <= 0x39:
                counted = _COUNT.match(buffer, pos)
                if counted is None and size - pos < _UNDECIDED and _END.search(buffer, pos) is None:
                    break  # the count may not have arrived whole yet
                if counted is not None:
                    start = counted.end()
                    if start >= size:
                        break  # is a `<` coming?
                    if buffer[start] == 0x3C:  # "<"
                        count = int(counted[1])
                        if count <= limit:
                            if size - start < count:
                                break
                            frames.append((bytes(buffer[start : start + count]), False))
                            pos = start + count
                            continue
                        if size - start < limit:
                            break
                        frames.append((bytes(buffer[start : start + limit]), True))
                        self.skip = count - limit
                        pos = start + limit
                        continue
            found = _END.search(buffer, pos)
            if found is None:
                if size - pos > limit:
                    frames.append((bytes(buffer[pos : pos + limit]), True))
                    self.discarding_line = True
                    pos += limit
                    continue
                break
            end = found.start()
            stop = end - 1 if end > pos and buffer[end - 1] == 0x0D else end
            if stop - pos > limit:
                frames.append((bytes(buffer[pos : pos + limit]), True))
            else:
                frames.append((bytes(buffer[pos:stop]), False))
            pos = found.end()
        del buffer[:pos]
        return frames

    def finish(self) -> list[Frame]:
        """What is left when the stream ends: a last line without its LF is a whole message; an
        octet-counted message cut short is kept as far as it came, flagged truncated."""
        rest = bytes(self.buffer).strip(b"\r\n\x00")
        self.buffer.clear()
        if not rest or self.skip or self.discarding_line:
            return []
        counted = _COUNT.match(rest)
        if counted is not None and rest[counted.end() : counted.end() + 1] == b"<":
            return [(rest[counted.end() :], True)]
        return [(rest[: self.max_message], len(rest) > self.max_message)]

    def held(self) -> int:
        """Bytes held for a message not yet complete."""
        return len(self.buffer)
