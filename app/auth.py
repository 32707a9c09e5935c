"""API keys: optional, off until API_KEYS or INGEST_API_KEYS is set.

    API_KEYS          every route
    INGEST_API_KEYS   writes only (POST); a read route answers 403

On Lambda the keys may come from a Secrets Manager secret instead (API_KEYS_SECRET_ARN), read once per
container. A key comes as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Liveness and readiness stay open
(load balancers probe them without keys), so does the web view's page (it asks for a key itself), and so does
a CORS preflight, which CORSMiddleware answers
before this middleware sees it. A key is compared in constant time against every configured key, and is
never logged, echoed in an error or counted by name.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum

from starlette.types import ASGIApp, Receive, Scope, Send

from app import secrets
from app.asgi import error_response, route_path
from app.config import Settings, split_list
from app.errors import Forbidden, Unauthorized

# /loki/ready: Loki agents probe it, and Loki answers it without credentials.
OPEN = frozenset({"/", "/health/ready", "/ui", "/loki/ready"})
# The web view's static files: the page asks for a key itself and sends it with every API call.
OPEN_PREFIX = "/ui/assets/"


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
        if scope["type"] != "http" or not self.keys:  # no keys configured: nothing to check, nothing to pay
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path in OPEN or path.startswith(OPEN_PREFIX):
            await self.app(scope, receive, send)
            return
        grant = self.grant(_presented(scope))
        if grant is None:
            error = Unauthorized(
                "a valid API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
            )
            await error_response(error)(scope, receive, send)
        elif grant is Grant.ingest and scope["method"] != "POST":
            error = Forbidden(
                "this API key may only send logs (INGEST_API_KEYS); reading needs an API_KEYS key"
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


def _presented(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer":
                return token.strip()
        elif name == b"x-api-key":
            return value.strip()
    return None
