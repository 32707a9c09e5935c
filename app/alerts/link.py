"""The web view's link to a rule's logs: /ui takes GET /logs's filters from its query string (app/ui/app.js),
and `since` without `range` as a custom range, so a window becomes since/until."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from app.alerts import rules


def ui(filters: dict[str, Any], since: datetime, until: datetime | None, base: str = "") -> str:
    """`{base}/ui?…`: the logs the rule counts between since and until (until None: up to now)."""
    pairs = [(name, value) for name, values in rules.params(filters).items() for value in values]
    pairs.append(("since", _iso(since)))
    if until is not None:
        pairs.append(("until", _iso(until)))
    return f"{base.rstrip('/')}/ui?{urlencode(pairs)}"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
