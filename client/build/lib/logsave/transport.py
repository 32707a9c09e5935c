"""One POST of a batch, on one kept-alive connection, and what its answer means for the batch.

Uses http.client directly: it never logs (so sending can never feed the queue it is emptying), and one
connection is reused between batches. Runs only on the sender thread.
"""

from __future__ import annotations

import gzip
import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# Statuses worth another try of the same batch, and the one that asks for smaller batches; every other
# non-200 drops the batch (the client module says which and why).
RETRY = frozenset({408, 429, 500, 502, 503, 504})
SPLIT = 413


@dataclass
class Answer:
    status: int
    retry_after: float | None
    body: dict[str, Any]


class Transport:
    def __init__(self, url: str, api_key: str | None, timeout: float, user_agent: str) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"logsave: not an http(s) URL: {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        path = parts.path.rstrip("/")
        # The base URL of the server, or its /logs URL: both work. Entries are sent with partial=true, so
        # one bad entry costs only itself.
        self.path = (path if path.endswith("/logs") else path + "/logs") + "?partial=true"
        self.timeout = timeout
        self.headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": user_agent,
        }
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, key: str) -> Answer:
        """Send one batch; raises OSError (or http.client's errors) when no answer came."""
        payload = gzip.compress(body, compresslevel=6, mtime=0)
        conn = self._connection()
        try:
            conn.request("POST", self.path, body=payload, headers={**self.headers, "Idempotency-Key": key})
            response = conn.getresponse()
            raw = response.read()
        except BaseException:
            self.close()
            raise
        if response.getheader("connection", "").lower() == "close":
            self.close()
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {}
        return Answer(
            response.status,
            _seconds(response.getheader("retry-after")),
            parsed if isinstance(parsed, dict) else {},
        )

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._conn = kind(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _seconds(header: str | None) -> float | None:
    if header is None:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        return None
