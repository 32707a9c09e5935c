"""One syslog message's bytes -> its parts, the format detected per message.

* RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`, `-` for a value not
  given; MSG may start with a UTF-8 BOM; STRUCTURED-DATA is `[id@pen param="value" ...]...` with `\\"`,
  `\\\\` and `\\]` escaped in values.
* RFC 3164 / BSD: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`, every part after the PRI optional as
  senders have it: the year is the one that puts the date nearest the time received, and a time without
  a zone is UTC. After a whole header (time and host) the next word is the tag, with or without its
  colon (`TAG:` or `TAG MSG`, as rsyslog reads it); without one, only a word ending in `:` is. rsyslog's high-precision form puts an RFC 3339 time where the BSD one goes
  (`RSYSLOG_ForwardFormat`); some devices write the year after the day (`Dec  6 2026 10:00:00`). A first
  word that ends in `:` or holds `[` is the tag, not a host (local senders leave the host out).
* Anything else (no `<PRI>`, a PRI above 191) is not syslog: the whole text is the message, and
  `Message.syslog` is False.

Bytes that are not UTF-8 are replaced (U+FFFD), never refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

BOM = b"\xef\xbb\xbf"
# A message without a PRI is user.notice (RFC 3164 4.3.3).
DEFAULT_PRI = 13

_PRI = re.compile(rb"<([0-9]{1,3})>")
_HEADER_5424 = re.compile(rb"1 (\S{1,64}) (\S{1,255}) (\S{1,48}) (\S{1,128}) (\S{1,32}) ")
# A quoted value is `"` (run of plain characters, then escape + run)* `"`, written so that the engine never
# tries alternatives per character, and possessive (`*+`: what a run took is never given back, which could
# not lead to a match anyway) so that it keeps no backtracking state per run either.
_SD_ELEMENT = re.compile(
    rb'\[([^ =\]"]{1,32})((?: [^ =\]"]{1,32}="[^"\\]*+(?:\\.[^"\\]*+)*+")*+) ?\]', re.DOTALL
)
_SD_PARAM = re.compile(r' ([^ =\]"]{1,32})="([^"\\]*+(?:\\.[^"\\]*+)*+)"', re.DOTALL)
_MONTHS = {name: number for number, name in enumerate(
    (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"), 1)}  # fmt: skip
_BSD_TIME = re.compile(
    rb"([A-Z][a-z]{2}) {1,2}([0-9]{1,2}) (?:([0-9]{4}) )?([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?(?: |$)"
)
_ISO_TIME = re.compile(rb"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9]{2}:[0-9]{2})?)(?: |$)")
_TAG = re.compile(rb"([^\s:\[\]]{1,48})(?:\[([^\]\s]{0,128})\])?:(?: |$)")
# After a whole BSD header (time and host) the next word is the tag, its colon optional (as rsyslog reads it).
_HEADER_TAG = re.compile(rb"([^\s:\[\]]{1,48})(?:\[([^\]\s]{0,128})\])?:?(?: |$)")
_WORD = re.compile(rb"(\S{1,255})(?: |$)")


@dataclass(slots=True)
class Message:
    facility: int
    severity: int
    msg: str
    timestamp: datetime | None = None
    hostname: str | None = None
    app_name: str | None = None
    procid: str | None = None
    msgid: str | None = None
    structured_data: dict[str, dict[str, str]] | None = None
    # The time as sent, when it could not be read.
    bad_timestamp: str | None = None
    syslog: bool = True


def parse(data: bytes, received: datetime) -> Message:
    """The message's parts; never raises (what is not syslog is a plain message). Line ends after the
    message are the sender's framing (rsyslog's RFC 5424 template ends in LF even when octet-counted)."""
    data = data.rstrip(b"\r\n\x00")
    pri = _PRI.match(data)
    if pri is None or int(pri[1]) > 191:
        return Message(DEFAULT_PRI >> 3, DEFAULT_PRI & 7, _text(data), syslog=False)
    value = int(pri[1])
    message = Message(value >> 3, value & 7, "")
    header = _HEADER_5424.match(data, pri.end())
    if header is not None:
        _rfc5424(data, header, message)
    else:
        _rfc3164(data, pri.end(), message, received)
    return message


def _nil(value: bytes) -> str | None:
    return None if value == b"-" else value.decode("utf-8", "replace")


def _text(data: bytes) -> str:
    return data.removeprefix(BOM).decode("utf-8", "replace")


def _rfc5424(data: bytes, header: re.Match[bytes], message: Message) -> None:
    stamp, host, app, procid, msgid = header.groups()
    if stamp != b"-":
        message.timestamp = _iso(stamp)
        if message.timestamp is None:
            message.bad_timestamp = stamp.decode("utf-8", "replace")
    message.hostname, message.app_name = _nil(host), _nil(app)
    message.procid, message.msgid = _nil(procid), _nil(msgid)
    pos = header.end()
    if data[pos : pos + 1] == b"-":
        pos += 1
    elif data[pos : pos + 1] == b"[":
        elements: dict[str, dict[str, str]] = {}
        while (element := _SD_ELEMENT.match(data, pos)) is not None:
            params = elements.setdefault(element[1].decode("utf-8", "replace"), {})
            text = element[2].decode("utf-8", "replace")
            pairs = _SD_PARAM.findall(text)
            params.update(pairs)
            if "\\" in text:
                # Only the values with an escape are redone; `is`: a later param of the same name won.
                for name, value in pairs:
                    if "\\" in value and params[name] is value:
                        params[name] = _unescaped(value)
            pos = element.end()
        # Structured data that does not parse is left in the message, where nothing of it is lost.
        message.structured_data = elements or None
    if data[pos : pos + 1] == b" ":
        pos += 1
    message.msg = _text(data[pos:])


def _unescaped(value: str) -> str:
    """A PARAM-VALUE with its escapes (`\\"`, `\\\\`, `\\]`) undone; any other backslash is kept. Three
    replaces in C, in this order, are exact: each run of n backslashes before a `"` or `]` loses one to
    the first two, then every pair becomes one, leaving n // 2, as reading the pairs left to right does
    (before another character, n - n // 2; a value never ends in an odd run)."""
    return value.replace('\\"', '"').replace("\\]", "]").replace("\\\\", "\\")


def _iso(stamp: bytes) -> datetime | None:
    try:
        moment = datetime.fromisoformat(stamp.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _rfc3164(data: bytes, pos: int, message: Message, received: datetime) -> None:
    bsd = _BSD_TIME.match(data, pos)
    if bsd is not None:
        message.timestamp = _bsd_time(bsd, received)
        if message.timestamp is None:
            message.bad_timestamp = bsd[0].strip().decode("ascii", "replace")
        pos = bsd.end()
    else:
        iso = _ISO_TIME.match(data, pos)
        if iso is not None:
            message.timestamp = _iso(iso[1])
            if message.timestamp is None:
                message.bad_timestamp = iso[1].decode("ascii", "replace")
            pos = iso.end()
    tag_pattern = _TAG
    if message.timestamp is not None or message.bad_timestamp is not None:
        # After a time comes the host, unless the word is a tag (local senders leave the host out).
        word = _WORD.match(data, pos)
        if word is not None and not word[1].endswith(b":") and b"[" not in word[1]:
            message.hostname = word[1].decode("utf-8", "replace")
            pos = word.end()
            tag_pattern = _HEADER_TAG
    tag = tag_pattern.match(data, pos)
    if tag is not None:
        message.app_name = tag[1].decode("utf-8", "replace")
        if tag[2]:
            message.procid = tag[2].decode("utf-8", "replace")
        pos = tag.end()
    message.msg = _text(data[pos:])


def _bsd_time(found: re.Match[bytes], received: datetime) -> datetime | None:
    month = _MONTHS.get(found[1])
    if month is None:
        return None
    day, hour, minute, second = int(found[2]), int(found[4]), int(found[5]), int(found[6])
    micro = int(found[7].ljust(6, b"0")) if found[7] else 0
    years = (int(found[3]),) if found[3] else (received.year - 1, received.year, received.year + 1)
    best: datetime | None = None
    for year in years:
        try:
            moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
        except ValueError:  # Feb 29 in a common year, a day 31 of a 30-day month, hour 25
            continue
        if best is None or abs(moment - received) < abs(best - received):
            best = moment
    return best
