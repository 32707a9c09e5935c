"""AWS Lambda entry point: `handler.handler`, behind API Gateway (REST or HTTP API), a Function URL or an ALB.

The app is the same one uvicorn serves, with three Lambda differences:
* lifespan="off": Mangum would otherwise open and close the pool on every invocation. The pool is opened
  lazily by the first request instead, on Mangum's event loop, and reused while the container is warm.
* small pool defaults (DB_POOL_MIN_SIZE=0, DB_POOL_MAX_SIZE=1) unless set: one container serves one
  request at a time, and reserved concurrency x max size is what the database must accept.
* one COPY per request (INGEST_MODE=direct): group commit's writer tasks must not outlive an invocation.
A scheduled EventBridge event runs app/storage/maintenance.py and an evaluation of the alert rules
(app/alerts/; the invocation waits for the notifications it sends) instead of a request, and a
CloudWatch Logs subscription event (`{"awslogs": …}`) is stored by app/intake/subscription.py: it
raises only when PostgreSQL is away, so that Lambda delivers the event again. The cold-storage pass is
skipped there (pyarrow and DuckDB are not in the package: docs/storage.md, "Cold storage"), and so are reads of archived
days.
Never an embedded PostgreSQL: without DATABASE_URL or DATABASE_HOST every request answers a 500 saying so.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from mangum import Mangum

from app import heap, jsonlog
from app.alerts import evaluate as alerting
from app.alerts.notify import Notifier
from app.config import IngestMode, Settings
from app.intake import subscription
from app.main import create_app
from app.storage import maintenance

# stream_max_clients 0: API Gateway buffers whole answers, so GET /logs/stream is off (the web view polls).
LAMBDA_DEFAULTS = {"db_pool_min_size": 0, "db_pool_max_size": 1, "stream_max_clients": 0}
# Deliveries must end inside the function's timeout (template.yaml: 28 s): 3 attempts of at most 5 s,
# 1 s and 2 s apart.
LAMBDA_NOTIFIER = {"attempts": 3, "backoff": 1.0, "timeout": 5.0}


def lambda_settings(settings: Settings | None = None) -> Settings:
    """The settings from the environment, with Lambda's pool defaults where the environment is silent."""
    settings = settings or Settings()
    defaults = {
        name: value for name, value in LAMBDA_DEFAULTS.items() if name not in settings.model_fields_set
    }
    return settings.model_copy(update=defaults)


def build(settings: Settings | None = None) -> tuple[FastAPI, Mangum]:
    settings = lambda_settings(settings)
    jsonlog.configure(settings.log_level)
    app = create_app(settings, allow_embedded=False, ingest_mode=IngestMode.direct)
    return app, Mangum(app, lifespan="off")


app, _mangum = build()
heap.settle()  # app/heap.py: once per container, after the import-time start-up
# Mangum runs each invocation on the thread's current event loop, and the pool belongs to the loop it was
# opened on. One loop for the life of the container, made current before every invocation (newer Pythons
# no longer create one implicitly, and anything that ran asyncio.run() in between would have unset it).
_loop = asyncio.new_event_loop()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    asyncio.set_event_loop(_loop)
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        # EventBridge (template.yaml's Maintenance schedule): housekeeping, not an HTTP request.
        return _loop.run_until_complete(_scheduled())
    if "awslogs" in event:
        # A subscription filter on another log group (template.yaml's LogGroupsToSubscribe).
        return _loop.run_until_complete(
            subscription.deliver(event["awslogs"], app.state.settings, app.state.writer)
        )
    return _mangum(event, context)


async def _scheduled() -> dict[str, Any]:
    done = await maintenance.run_once(app.state.database)
    notifier = Notifier(**LAMBDA_NOTIFIER)
    alerts = await alerting.run_once(app.state.database, notifier)
    await notifier.drain()  # nothing of an invocation may outlive it
    return {**done, **alerts}
