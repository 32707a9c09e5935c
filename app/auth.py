"""API keys: optional, off until API_KEYS or INGEST_API_KEYS is set.

    API_KEYS          every route
    INGEST_API_KEYS   writes only (POST); a read route answers 403, and so does /alerts (managing alert
                      rules, even with POST, is not sending logs)

On Lambda the keys may come from a Secrets Manager secret instead (API_KEYS_SECRET_ARN), read once per
container. A key comes in any form the log agents send (app/routes/bulk.py's Elasticsearch bulk API, Amazon
Data Firehose):

    Authorization: Bearer <key>            X-API-Key: <key>
    Authorization: Basic base64(user:key)  the key as the password (any user; the user when no password)
    Authorization: ApiKey <token>          Elasticsearch's form, base64(id:key): the part after the colon is
                                           the key (any id); the token itself is tried as the key too
    X-Amz-Firehose-Access-Key: <key>       Firehose's access key (POST /firehose answers a missing key in
                                           Firehose's error shape)

An ingest-only key may send logs (POST, and PUT on a bulk path) and answer the probes agents make before they
send (`INGEST_PROBES`). Liveness and readiness stay open
(load balancers probe them without keys), so does the web view's page (it asks for a key itself), and so does
a CORS preflight, which CORSMiddleware answers
before this middleware sees it. A key is compared in constant time against every configured key, and is
never logged, echoed in an error or counted by name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from enum import Enum

from starlette.types import ASGIApp, Receive, Scope, Send

from app import secrets
from app.asgi import error_response, route_path
from app.config import Settings, split_list
from app.errors import Forbidden, Unauthorized
from app.formats import firehose
from app.routes.firehose import error_answer

# /loki/ready: Loki agents probe it, and Loki answers it without credentials.
OPEN = frozenset({"/", "/health/ready", "/ui", "/ui/alerts", "/loki/ready"})
# The web view's static files: the page asks for a key itself and sends it with every API call.
OPEN_PREFIX = "/ui/assets/"
# Routes an ingest key may not use whatever the method: alert rules (a POST there is not a write of logs).
FULL_ONLY_PREFIX = "/alerts"
# Loki's read API (app/routes/loki_query.py) takes POSTs too; under it only the push is a write.
LOKI_API = "/loki/api/v1/"
LOKI_PUSH = "/loki/api/v1/push"
# GETs an ingest-only key may make: Filebeat and Vector read the cluster's version, and Vector checks its
# health, with the key they send logs with (app/routes/bulk.py).
INGEST_PROBES = frozenset({"/elasticsearch", "/elasticsearch/", "/elasticsearch/_cluster/health"})
FIREHOSE_KEY = firehose.ACCESS_KEY.encode()


class Grant(Enum):
    all = "all"
    ingest = "ingest"


class ApiKeys:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        full, ingest = settings.api_key_list, settings.ingest_api_key_list
        if settings.api_keys_secret_arn:
            from_secret = secrets.api_keys(settings.api_keys_secret_arn)
            full, ingest = full + split_list(from_secret[0]), ingest + split_list(from_secret[1])
        # Digests of equal length, so that compare_digest's time says nothing about a key's length.
        self.keys = [(_digest(key), Grant.all) for key in full] + [
            (_digest(key), Grant.ingest) for key in ingest
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A WebSocket (Loki's tail) reads logs: it takes an API_KEYS key, else it is refused before it opens
        # (close code 1008, which an ASGI server answers with a 403).
        if (
            scope["type"] == "websocket"
            and self.keys
            and next(filter(None, map(self.grant, _presented(scope))), None) is not Grant.all
        ):
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http" or not self.keys:  # no keys configured: nothing to check, nothing to pay
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path in OPEN or path.startswith(OPEN_PREFIX):
            await self.app(scope, receive, send)
            return
        grant = next(filter(None, map(self.grant, _presented(scope))), None)
        if grant is None:
            error = Unauthorized(
                "a valid API key is required: send `Authorization: Bearer <key>`, `X-API-Key: <key>`, "
                "Basic auth with the key as password, or `Authorization: ApiKey base64(id:<key>)` "
                "(Firehose: the stream's access key)"
            )
            if path == firehose.PATH:
                await error_answer(_header(scope, firehose.REQUEST_ID.encode()), error)(scope, receive, send)
            else:
                await error_response(error)(scope, receive, send)
        elif grant is Grant.ingest and not _ingest_may(scope["method"], path):
            error = Forbidden(
                "this API key may only send logs (INGEST_API_KEYS); reading logs and managing alert rules need an "
                "API_KEYS key"
            )
            await error_response(error)(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def grant(self, key: bytes | None) -> Grant | None:
        if not key:
            return None
        presented = _digest(key)
        found = None
        for digest, grant in self.keys:  # every key is compared: no early exit on a match
            if hmac.compare_digest(presented, digest) and found is None:
                found = grant
        return found


def _digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


def _ingest_may(method: str, path: str) -> bool:
    if path.startswith(FULL_ONLY_PREFIX) or (path.startswith(LOKI_API) and path != LOKI_PUSH):
        return False
    if method == "POST":
        return True
    if method == "PUT":
        return path.endswith("/_bulk")
    return method in ("GET", "HEAD") and path in INGEST_PROBES


def _presented(scope: Scope) -> list[bytes]:
    """Every reading of the key the request presents (an ApiKey token has two)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            scheme, token = scheme.lower(), token.strip()
            if scheme == b"bearer":
                return [token]
            if scheme == b"basic":
                user, colon, password = _base64(token).partition(b":")
                return [password or user] if colon else []
            if scheme == b"apikey":
                _, colon, key = _base64(token).partition(b":")
                return [token, key] if colon else [token]
        elif name in (b"x-api-key", FIREHOSE_KEY):
            return [value.strip()]
    return []


def _base64(token: bytes) -> bytes:
    try:
        return base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _header(scope: Scope, wanted: bytes) -> str:
    return next((value.decode("latin-1") for name, value in scope["headers"] if name == wanted), "")
