"""Evaluating the alert rules: count each rule's logs in its window, move its state, hand notifications on.

A pass holds a session advisory lock, so one process evaluates at a time (every uvicorn worker of every
server runs the loop, as housekeeping does; Lambda runs a pass on its schedule, handler.py). The state
lives in alert_rules and each change is one `UPDATE … WHERE state = <the state read> RETURNING`: only the
evaluator whose UPDATE returned the row notifies, so even two passes that overlapped (a lock lost with its
connection) notify once per change.

    ok      -> firing   count >= threshold      "firing"
    firing  -> ok       count <  threshold      "resolved"
    firing  -> firing   renotify_seconds passed since the last notification (0: never)   "firing" again
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from app import query
from app.alerts import link, rules
from app.alerts.notify import Notification, Notifier
from app.database import Database
from app.errors import InvalidQuery
from app.search import lookup

log = logging.getLogger(__name__)

# Shared by every instance of this app; different from the other advisory lock keys (0x10654E5A…5C).
_LOCK_KEY = 0x10654EA1
SAMPLE = 5

_MOVE = """
UPDATE alert_rules SET state = $3, last_count = $4, last_evaluated_at = $5, last_notified_at = $5
WHERE id = $1 AND state = $2 AND last_notified_at IS NOT DISTINCT FROM $6 RETURNING id
"""
_RECORD = "UPDATE alert_rules SET last_count = $2, last_evaluated_at = $3 WHERE id = $1"


async def run_once(database: Database, notifier: Notifier, min_age: float = 0.0) -> dict[str, Any]:
    """One pass over the rules evaluated more than `min_age` seconds ago; {"skipped": …} when another
    process holds the lock."""
    pool = await database.pool()
    settings = database.settings
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
            return {"skipped": "another process is evaluating the alert rules"}
        try:
            # One moment for the whole pass, and QUERY_TIMEOUT for each count, as GET /logs has.
            at: datetime = await conn.fetchval("SELECT clock_timestamp()")
            await conn.execute(f"SET statement_timeout = {int(settings.query_timeout * 1000)}")
            due = await conn.fetch(
                f"SELECT {rules.COLUMNS} FROM alert_rules WHERE last_evaluated_at IS NULL"
                " OR last_evaluated_at <= $1::timestamptz - make_interval(secs => $2) ORDER BY id",
                at,
                min_age,
            )
            notified = 0
            for rule in due:
                try:
                    notification = await evaluate(conn, rule, at, settings.public_url, settings.search_index)
                except (asyncpg.PostgresError, OSError, InvalidQuery) as exc:  # one rule's trouble only
                    log.warning("alert rule %d not evaluated: %s: %s", rule["id"], type(exc).__name__, exc)
                    continue
                if notification:
                    notifier.send(notification)
                    notified += 1
        finally:
            await conn.execute("RESET statement_timeout")
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return {"alert_rules_evaluated": len(due), "alert_notifications": notified}


async def evaluate(
    conn: asyncpg.Connection, rule: asyncpg.Record, at: datetime, base_url: str = "", search: bool = True
) -> Notification | None:
    """Count the rule's logs in the window that ends at `at`, record it, and return the notification this
    evaluation owes (if its UPDATE won). With `search` (SEARCH_INDEX), a `q=`/`meta.` rule counts only the
    search index's candidates, looked up in the count's own REPEATABLE READ snapshot (blocks and rows are
    committed together, so the count is the scan's)."""
    filters = rules.filters_of(rule)
    since = at - timedelta(seconds=rule["window_seconds"])
    parsed = window(filters, since, at)
    where = " AND ".join(parsed.where)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        counted = (await lookup.narrow(conn, parsed) if search else None) or parsed
        count = await conn.fetchval(count_sql(counted), *counted.args)
    firing = count >= rule["threshold"]
    state, notified = rule["state"], rule["last_notified_at"]
    renotify = rule["renotify_seconds"]
    if state == "ok" and firing:
        new = "firing"
    elif state == "firing" and not firing:
        new = "ok"
    elif firing and renotify and (notified is None or at - notified >= timedelta(seconds=renotify)):
        new = "firing"
    else:
        await conn.execute(_RECORD, rule["id"], count, at)
        return None
    if await conn.fetchval(_MOVE, rule["id"], state, new, count, at, notified) is None:
        return None  # another evaluator moved it first (or the rule is gone): that one notifies
    sample = await conn.fetch(
        f"SELECT {query.DOCUMENT} AS doc FROM logs WHERE {where} ORDER BY created_at DESC, id DESC"
        f" LIMIT {SAMPLE}",
        *parsed.args,
    )
    return Notification(
        rule_id=rule["id"],
        urls=list(rule["notify"]),
        payload={
            "alert": rule["name"],
            "state": "firing" if new == "firing" else "resolved",
            "count": count,
            "threshold": rule["threshold"],
            "window_seconds": rule["window_seconds"],
            "query": filters,
            "url": link.ui(filters, since, at, base_url),
            "sample": [json.loads(r["doc"]) for r in sample],
            "at": at.isoformat().replace("+00:00", "Z"),
        },
    )


def window(filters: dict[str, Any], since: datetime, until: datetime) -> query.Query:
    """GET /logs's query for these filters (query.parse), over created_at in [since, until)."""
    parsed = query.parse(rules.params(filters), export=True)
    parsed.add("since", "created_at", since)
    parsed.add("until", "created_at", until)
    return parsed


def count_sql(parsed: query.Query) -> str:
    return f"SELECT count(*) FROM logs WHERE {' AND '.join(parsed.where)}"


async def run_forever(database: Database, interval: float) -> None:
    """Until cancelled; then deliveries still being retried are dropped (notify.py: at most once)."""
    # Each worker runs this loop; a pass skips the rules another worker evaluated in the last half interval.
    notifier = Notifier()
    try:
        while True:
            await asyncio.sleep(interval)
            try:
                await run_once(database, notifier, min_age=interval / 2)
            except Exception as exc:  # noqa: BLE001 - the database may be away; the next round tries again
                log.warning("alert evaluation failed: %s: %s", type(exc).__name__, exc)
    finally:
        await notifier.close()
