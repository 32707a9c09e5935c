"""CloudWatch Logs entries -> stored rows, for the two AWS front doors: subscription events the Lambda
receives (handler.py) and the CloudWatch records of POST /firehose (app/routes/firehose.py).

Lambda invokes a subscription's function asynchronously and invokes it again when it raises, so here:

* at least once becomes once: the rows are written with an idempotency claim derived from the payload (log
  group, stream and the events' ids), taken in the COPY's own transaction (app/intake/idempotency.py); the
  same event delivered again stores nothing and answers what the first delivery answered;
* a database outage raises (ServiceUnavailable), so Lambda retries the event later;
* bad content never raises, or a poison event would be retried until it expires and block nothing but
  itself: the valid lines are stored, the rest counted in the answer, in the log and in
  logsave_cloudwatch_rejected_total.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from app import metrics
from app.config import Settings
from app.errors import IngestError, InvalidLogs
from app.formats import cloudwatch
from app.intake import idempotency
from app.intake.rows import parse_values
from app.intake.writer import Batch, Row, Writer

log = logging.getLogger(__name__)

# Entries validated at a time: CloudWatch delivers at most 10,000 events per payload, Firehose more records.
CHUNK = 10_000


@dataclass
class Checked:
    """Validated rows, and what was refused on the way (counted, with the first few reasons kept)."""

    rows: list[Row] = field(default_factory=list)
    refused: int = 0
    reasons: list[str] = field(default_factory=list)

    def refuse(self, count: int, reasons: list[str]) -> None:
        self.refused += count
        self.reasons.extend(reasons[: max(0, 5 - len(self.reasons))])


def check(entries: list[dict[str, Any]], settings: Settings, checked: Checked | None = None) -> Checked:
    """The entries through app/intake/rows.py, a chunk at a time: the valid ones as rows, the rest counted."""
    checked = checked or Checked()
    window = settings.created_at_window
    for start in range(0, len(entries), CHUNK):
        part = entries[start : start + CHUNK]
        try:
            rows, rejected = parse_values(part, CHUNK, window=window)
        except InvalidLogs as exc:
            checked.refuse(len(part), [f"{e['field']}: {e['message']}" for e in exc.errors])
            continue
        checked.rows.extend(rows)
        if rejected:
            indexes = {item["index"] for item in rejected}
            checked.refuse(len(indexes), [f"{e['field']}: {e['message']}" for e in rejected])
    return checked


async def deliver(awslogs: Any, settings: Settings, writer: Writer) -> dict[str, Any]:
    """One subscription event's `awslogs` stored; the answer says how many lines were saved and refused."""
    data = awslogs.get("data") if isinstance(awslogs, dict) else None
    try:
        mapped = [
            cloudwatch.entries(payload)
            for payload in cloudwatch.payloads(cloudwatch.unpack(data, settings.max_body_bytes))
        ]
    except IngestError as exc:
        count("lambda", "undecodable", 1)
        log.warning("CloudWatch Logs event not stored: %s", exc.message)
        return {"status": "rejected", "saved": 0, "rejected": 1, "message": exc.message}
    if all(m.control for m in mapped):
        return {"status": "control", "saved": 0, "rejected": 0}
    checked = Checked()
    for payload in mapped:
        checked.refuse(len(payload.problems), payload.problems)
        check(payload.entries, settings, checked)
    answer = {"status": "success", "saved": len(checked.rows), "rejected": checked.refused}
    if checked.reasons:
        answer["message"] = "; ".join(checked.reasons)
    encoded = orjson.dumps(answer)
    if checked.rows:
        key = "cloudwatch:" + hashlib.sha256(b"".join(m.identity for m in mapped)).hexdigest()
        claim = idempotency.Claim(key, idempotency.fingerprint("cloudwatch", key.encode()))
        outcome = await writer.write(Batch(checked.rows, encoded, claim))
        if outcome.replayed:
            return {**orjson.loads(outcome.response), "replayed": True}
    if checked.refused:
        count("lambda", "invalid", checked.refused)
        log.warning("CloudWatch Logs lines not stored: %d (%s)", checked.refused, answer["message"])
    return answer


def count(source: str, reason: str, amount: int) -> None:
    if amount:
        metrics.CLOUDWATCH_REJECTED.labels(source=source, reason=reason).inc(amount)
