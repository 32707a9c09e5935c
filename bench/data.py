"""Seeded, realistic logs: varied messages, ids, paths, durations, stack traces, nested metadata, some
non-ASCII text. Realistic so that compression ratios and row sizes mean something."""

from __future__ import annotations

import gzip
import json
import random
import time
import uuid
from typing import Any

SERVICES = ["checkout-api", "payments", "search", "auth", "notifications", "web-frontend", "ios-app",
            "inventory-worker", "recommendations", "gateway"]  # fmt: skip
LOG_TYPES = {"web-frontend": "FRONTEND", "ios-app": "MOBILE", "inventory-worker": "WORKER"}
LEVELS = ["DEBUG"] * 15 + ["INFO"] * 60 + ["WARN"] * 15 + ["ERROR"] * 9 + ["FATAL"]
PATHS = ["/api/orders", "/api/orders/{id}", "/api/cart", "/api/users/{id}", "/api/search", "/api/payments",
         "/health", "/api/products/{id}/reviews", "/login", "/api/notifications/read"]  # fmt: skip
METHODS = ["GET"] * 6 + ["POST"] * 3 + ["PUT", "DELETE", "PATCH"]
MESSAGES = [
    "request completed in {ms} ms",
    "order {id} placed by user {user} ({n} items, total {amount} KRW)",
    "cache miss for key product:{id}, loading from database",
    "payment authorized for order {id} via {provider}",
    "search query returned {n} results",
    "user {user} logged in from {ip}",
    "retrying upstream call to {host} (attempt {n} of 3)",
    "slow query detected: {ms} ms on orders_by_user",
    "주문 {id} 결제가 완료되었습니다 ✅",
    "notification sent to {user} via {channel}",
    "inventory for sku-{id} below threshold ({n} left)",
    "rendered page {path} in {ms} ms",
]
ERRORS = [
    ("TimeoutError", "upstream {host} did not answer within 3000 ms"),
    ("ValueError", "invalid quantity {n} for sku-{id}"),
    ("KeyError", "'customer_id' missing from payload of order {id}"),
    ("ConnectionResetError", "connection reset by peer while talking to {host}"),
    ("PaymentDeclined", "card declined for order {id}: insufficient funds"),
]
FUNCTIONS = [("place_order", "app/orders/service.py"), ("authorize", "app/payments/gateway.py"),
             ("search", "app/search/views.py"), ("send", "app/notify/push.py"),
             ("reserve_stock", "app/inventory/tasks.py")]  # fmt: skip


class LogFactory:
    """Generates log entries (dicts, as a client would send them) from a fixed seed."""

    def __init__(self, seed: int = 42) -> None:
        self.rng = random.Random(seed)
        self.users = [f"user_{self.rng.randrange(10**6):06d}" for _ in range(500)]
        self.sessions = [uuid.UUID(int=self.rng.getrandbits(128)).hex[:24] for _ in range(300)]

    def _fill(self, template: str) -> str:
        r = self.rng
        return template.format(
            ms=round(r.lognormvariate(3, 1), 1), id=r.randrange(10**7), user=r.choice(self.users),
            n=r.randrange(1, 200), amount=r.randrange(1000, 500000), provider=r.choice(["toss", "kakaopay", "stripe"]),
            ip=f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)}", channel=r.choice(["push", "email", "sms"]),
            host=r.choice(["inventory.internal", "pg.payments", "search-7.internal"]), path=r.choice(PATHS),
        )  # fmt: skip

    def _stack_trace(self, error_type: str, message: str) -> str:
        frames = self.rng.sample(FUNCTIONS, k=3)
        lines = ["Traceback (most recent call last):"]
        for function, file in frames:
            lines.append(f'  File "/srv/{file}", line {self.rng.randrange(10, 900)}, in {function}')
            lines.append(f"    result = {function}(request, timeout=3)")
        lines.append(f"{error_type}: {message}")
        return "\n".join(lines)

    def entry(self) -> dict[str, Any]:
        r = self.rng
        service = r.choice(SERVICES)
        level = r.choice(LEVELS)
        method = r.choice(METHODS)
        duration = round(r.lognormvariate(3, 1.2), 3)
        entry: dict[str, Any] = {
            "level": level,
            "service": service,
            "message": self._fill(r.choice(MESSAGES)),
            "created_at": round(time.time() - r.random() * 5, 6),
            "log_type": LOG_TYPES.get(service, "BACKEND"),
            "environment": "production",
            "service_version": f"v{r.randrange(1, 4)}.{r.randrange(20)}.{r.randrange(10)}",
            "trace_id": uuid.UUID(int=r.getrandbits(128)).hex,
            "user_id": r.choice(self.users),
            "session_id": r.choice(self.sessions),
            "path": r.choice(PATHS).replace("{id}", str(r.randrange(10**6))),
            "method": method,
            "duration_ms": min(duration, 9_999_999.0),
            "metadata": {
                "http": {
                    "status": 200 if level in ("DEBUG", "INFO") else r.choice([400, 404, 429, 500, 503]),
                    "user_agent": r.choice(
                        [
                            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1)",
                            "okhttp/4.12.0",
                            "python-requests/2.32.3",
                        ]
                    ),
                    "bytes": r.randrange(200, 50_000),
                },
                "performance": {"db_ms": round(duration * r.random(), 2), "cache_hit": r.random() < 0.7},
                "region": r.choice(["ap-northeast-2", "us-east-1", "eu-west-1"]),
            },
        }
        if service == "web-frontend":
            entry["action_type"] = r.choice(["click", "submit", "navigate"])
        if level in ("ERROR", "FATAL"):
            error_type, template = r.choice(ERRORS)
            message = self._fill(template)
            function, file = r.choice(FUNCTIONS)
            entry.update(error_type=error_type, message=message, stack_trace=self._stack_trace(error_type, message),
                         function_name=function, file_path=file)  # fmt: skip
        return entry

    def batch(self, size: int) -> list[dict[str, Any]]:
        return [self.entry() for _ in range(size)]


def body(entries: list[dict[str, Any]]) -> bytes:
    return json.dumps({"logs": entries}, ensure_ascii=False).encode()


def gzipped(raw: bytes) -> bytes:
    # Level 6 is what gzip.compress, most HTTP clients and the seed's Python client use.
    return gzip.compress(raw, compresslevel=6, mtime=0)
