"""LogClient: the application's thread only enqueues; a sender thread batches, gzips, sends and retries.

The caller's side of `log()` is a tuple, a counter and a deque append under a lock that only callers
take (never the sender): no I/O, no JSON, nothing that can wait on the network. The queue is bounded by
count and by bytes; past either bound a log is dropped and counted by reason, never blocking.

The sender thread wakes every few milliseconds, takes up to `batch_size` logs when that many are queued,
when `flush_interval` has passed, or when a flush is asked for, and turns them into one request:

    200          done (with partial=true, the entries the server refused are counted as dropped)
    408 429 5xx  and connection errors: retried with exponential backoff and jitter, Retry-After honoured,
                 the same Idempotency-Key on every retry, so a retry after a lost answer never stores twice
    413          the batch split in two and each half sent; one log alone too large is dropped
    400 401 403 404 415 422   dropped, counted, warned about once on stderr

The sender never logs through `logging` (a handler that feeds this client could otherwise receive its own
messages, or deadlock under logging's locks during `dictConfig`); it writes its warnings to stderr.
"""

from __future__ import annotations

import atexit
import http.client
import os
import random
import sys
import threading
import time
import uuid
import weakref
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from logsave import entry, transport

__all__ = ["LogClient"]

_CLIENTS: weakref.WeakSet[LogClient] = weakref.WeakSet()
# Set on sender threads: a handler feeding a client ignores whatever is logged there (re-entrancy).
on_sender_thread = threading.local()
# A batch's body stays under the server's default MAX_BODY_BYTES (10 MiB, decompressed) with room to spare.
MAX_BODY_BYTES = 8 * 1024 * 1024
_POLL = 0.01


@dataclass
class _Batch:
    entries: list[bytes]
    logs: int  # entries that are application logs (the rest is the client's own health report)
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    attempts: int = 0

    def body(self) -> bytes:
        return b'{"logs":[' + b",".join(self.entries) + b"]}"


class LogClient:
    """Sends logs to log-save-server. Unset arguments come from LOGSAVE_URL, LOGSAVE_API_KEY and
    LOGSAVE_SERVICE."""

    def __init__(
        self,
        url: str | None = None,
        *,
        service: str | None = None,
        api_key: str | None = None,
        environment: str | None = None,
        service_version: str | None = None,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        max_queue: int = 100_000,
        max_queue_bytes: int = 64 * 1024 * 1024,
        max_log_bytes: int = 256 * 1024,
        timeout: float = 10.0,
        max_retry_delay: float = 30.0,
        exit_timeout: float = 5.0,
    ) -> None:
        url = url or os.environ.get("LOGSAVE_URL") or "http://localhost:8000"
        service = service or os.environ.get("LOGSAVE_SERVICE") or _default_service()
        self.defaults: dict[str, Any] = {"service": service}
        if environment:
            self.defaults["environment"] = environment
        if service_version:
            self.defaults["service_version"] = service_version
        self.batch_size = max(1, min(batch_size, 1000))
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.max_log_bytes = max_log_bytes
        self.max_retry_delay = max_retry_delay
        self.exit_timeout = exit_timeout
        self._transport_args = (url, api_key or os.environ.get("LOGSAVE_API_KEY"), timeout)
        transport.Transport(*self._transport_args, user_agent="")  # check the URL now, in the caller's face
        self._closed = False
        self._reset()
        _CLIENTS.add(self)
        atexit.register(_close_at_exit, weakref.ref(self))

    def _reset(self) -> None:
        """Fresh state: at start, and in a forked child (which must send nothing its parent queued)."""
        self._queue: deque[tuple[int, tuple[Any, ...]]] = deque()
        self._caller_lock = threading.Lock()  # taken by callers only, never by the sender
        # Each counter has one writer: callers (under their lock) or the sender.
        self._enqueued = self._enqueued_bytes = 0
        self._refused: Counter[str] = Counter()  # written by callers
        self._taken = self._taken_bytes = 0
        self._sent = self._retries = self._failed = self._truncated = 0
        self._settled = self._unsent = 0  # logs whose fate is decided; of them, not sent
        self._dropped: Counter[str] = Counter()  # written by the sender
        self._reported = 0
        self._warned: set[int] = set()
        self._flush_until = 0  # the sender works without waiting for a full batch until this many are done
        self._stop = False
        self._thread: threading.Thread | None = None

    # --- the application's side ----------------------------------------------------------------------

    def log(self, level: int | str, message: Any, **fields: Any) -> None:
        """Queue one log; returns at once. Fields that are columns of the server stay columns, the rest
        goes into metadata (`metadata=` is merged)."""
        self._put(("call", time.time(), level, message, fields), _size(message) + 64 * len(fields))

    def _put(self, item: tuple[Any, ...], size: int) -> None:
        with self._caller_lock:
            if self._closed:
                self._refused["closed"] += 1
                return
            if self._enqueued - self._taken >= self.max_queue:
                self._refused["queue_full"] += 1
                return
            if self._enqueued_bytes - self._taken_bytes + size > self.max_queue_bytes:
                self._refused["queue_bytes"] += 1
                return
            self._queue.append((size, item))
            self._enqueued += 1
            self._enqueued_bytes += size
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="logsave-sender", daemon=True)
                self._thread.start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every log queued so far is sent or given up; True when all of them were sent."""
        target = self._enqueued
        unsent = self._unsent
        self._flush_until = max(self._flush_until, target)
        deadline = time.monotonic() + timeout
        while self._settled < target:
            if time.monotonic() >= deadline or self._thread is None or not self._thread.is_alive():
                return False
            time.sleep(_POLL)
        return self._unsent == unsent

    def close(self, timeout: float | None = None) -> None:
        """Flush (up to `timeout`, default `exit_timeout`), then stop the sender; what is still queued
        then is counted as failed. Safe to call more than once."""
        if self._closed:
            return
        self.flush(self.exit_timeout if timeout is None else timeout)
        with self._caller_lock:
            self._closed = True
        self._stop = True
        if self._thread is not None:
            # A send blocked on a dead server ends within `timeout`; the thread is a daemon, so the process
            # never waits for it longer than this.
            self._thread.join(1.0)

    def stats(self) -> dict[str, Any]:
        dropped = self._refused + self._dropped
        return {
            "queued": self._enqueued - self._settled,
            "sent": self._sent,
            "dropped": sum(dropped.values()),
            "dropped_by_reason": dict(dropped),
            "retries": self._retries,
            "failed": self._failed,
            "truncated": self._truncated,
        }

    # --- the sender thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        on_sender_thread.active = True
        sender = transport.Transport(*self._transport_args, user_agent="logsave-client/1.0")
        last = time.monotonic()
        try:
            while not self._stop:
                due = (
                    len(self._queue) >= self.batch_size
                    or self._settled < self._flush_until
                    or time.monotonic() - last >= self.flush_interval
                )
                if not due or not self._queue:
                    time.sleep(_POLL)
                    continue
                last = time.monotonic()
                for batch in self._take():
                    self._deliver(sender, batch)
        finally:
            sender.close()
            # Closing: what was never sent is given up, and counted.
            while self._queue:
                self._queue.popleft()
                self._settle(failed=1)

    def _take(self) -> list[_Batch]:
        """Up to batch_size queued logs as one batch (or more, when their bodies would be too large)."""
        entries: list[bytes] = []
        size = 0
        batches = []
        for _ in range(min(self.batch_size, len(self._queue))):
            queued_size, item = self._queue.popleft()
            self._taken += 1
            self._taken_bytes += queued_size
            raw = self._encode(item)
            if entries and size + len(raw) > MAX_BODY_BYTES:
                batches.append(_Batch(entries, len(entries)))
                entries, size = [], 0
            entries.append(raw)
            size += len(raw) + 1
        if entries:
            batches.append(_Batch(entries, len(entries)))
        # What was dropped and not yet reported rides along with the first batch, as a log of its own.
        unreported = sum((self._refused + self._dropped).values()) - self._reported
        if batches and unreported > 0:
            if len(batches[0].entries) < self.batch_size:
                batches[0].entries.append(self._health(unreported))
            else:  # a full batch has no room under the server's MAX_BATCH_SIZE: the report goes alone
                batches.append(_Batch([self._health(unreported)], 0))
        return batches

    def _encode(self, item: tuple[Any, ...]) -> bytes:
        try:
            if item[0] == "call":
                _, created, level, message, fields = item
                fields = dict(fields)
                document = entry.from_call(created, level, message, fields, self.defaults)
            else:
                _, record, message = item
                document = entry.from_record(record, message, self.defaults)
            raw, cut = entry.encode(document, self.max_log_bytes)
        except Exception as exc:  # noqa: BLE001 - never lose a log to a bug in turning it into JSON
            raw, cut = entry.encode({**self.defaults, "level": "ERROR", "message": f"logsave: {exc!r}"}, 4096)
        self._truncated += cut
        return raw

    def _health(self, unreported: int) -> bytes:
        dropped = dict(self._refused + self._dropped)
        report = {**self.defaults, "level": "WARN", "created_at": time.time(),
                  "message": f"logsave client dropped {unreported} log(s) since its last report",
                  "metadata": {"logsave_client": {"dropped": dropped, "unreported": unreported,
                                                  "total_dropped": sum(dropped.values())}}}  # fmt: skip
        return entry.encode(report, 65536)[0]

    def _deliver(self, sender: transport.Transport, batch: _Batch) -> None:
        reported = sum((self._refused + self._dropped).values())
        while True:
            if self._stop:
                self._settle(failed=batch.logs)
                return
            try:
                answer = sender.post(batch.body(), batch.key)
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, garbled
                if not self._wait_to_retry(batch, None, f"{type(exc).__name__}: {exc}"):
                    return
                continue
            if answer.status == 200:
                rejected = {
                    item.get("index") for item in answer.body.get("rejected") or [] if isinstance(item, dict)
                }
                refused = len([i for i in rejected if isinstance(i, int) and i < batch.logs])
                self._settle(sent=batch.logs - refused, dropped={"invalid": refused})
                if len(batch.entries) > batch.logs:  # it carried the report of earlier drops
                    self._reported = reported
                return
            if batch.logs > 1 and (answer.status == transport.SPLIT or _batch_refused(answer)):
                logs = batch.entries[: batch.logs]  # the drop report, if any, rides again later
                half = len(logs) // 2
                for part in (logs[:half], logs[half:]):
                    self._deliver(sender, _Batch(part, len(part)))
                return
            if answer.status in transport.RETRY:
                if not self._wait_to_retry(batch, answer.retry_after, f"HTTP {answer.status}"):
                    return
                continue
            reason = "too_large" if answer.status == transport.SPLIT else f"http_{answer.status}"
            self._settle(dropped={reason: batch.logs})
            self._warn_once(
                answer.status, f"the server answered {answer.status}: {answer.body.get('message', '')}"
            )
            return

    def _settle(self, *, sent: int = 0, failed: int = 0, dropped: dict[str, int] | None = None) -> None:
        lost = failed + sum((dropped or {}).values())
        self._sent += sent
        self._failed += failed
        for reason, count in (dropped or {}).items():
            if count:
                self._dropped[reason] += count
        self._unsent += lost
        self._settled += sent + lost

    def _wait_to_retry(self, batch: _Batch, retry_after: float | None, why: str) -> bool:
        """Sleep before the next attempt; False when the client is closing and the time is up."""
        batch.attempts += 1
        self._retries += 1
        backoff = min(self.max_retry_delay, 0.25 * 2 ** min(batch.attempts, 10))
        delay = random.uniform(backoff / 2, backoff)
        if retry_after is not None:
            delay = min(self.max_retry_delay, retry_after) + random.uniform(0, 0.1)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if self._stop:
                self._settle(failed=batch.logs)
                self._warn_once(0, f"gave up on {batch.logs} log(s) at close: {why}")
                return False
            time.sleep(min(_POLL * 10, max(0.0, deadline - time.monotonic())))
        return True

    def _warn_once(self, kind: int, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            sys.stderr.write(f"logsave: {message}\n")


def _batch_refused(answer: transport.Answer) -> bool:
    """A 422 about the batch itself (too many logs for this server's MAX_BATCH_SIZE), not its entries."""
    errors = answer.body.get("errors") or []
    return answer.status == 422 and any(isinstance(e, dict) and e.get("field") == "logs" for e in errors)


def _size(message: Any) -> int:
    return (len(message) if isinstance(message, str) else 64) + 128


def _default_service() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return (name.removesuffix(".py") or "python")[:100]


def _close_at_exit(ref: weakref.ref[LogClient]) -> None:
    client = ref()
    if client is not None:
        client.close()


def _after_fork_in_child() -> None:
    # The child starts empty: whatever the parent had queued is the parent's to send, not twice.
    for client in list(_CLIENTS):
        client._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
