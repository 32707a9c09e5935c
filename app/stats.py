"""GET /stats: exact counts, read from the logs table in one pass (soft-deleted rows excluded)."""

from __future__ import annotations

import asyncpg

from app.models import ServiceCount, Stats

_QUERY = """
SELECT service, level::text AS level, count(*) AS n,
       count(*) FILTER (WHERE created_at >= now() - interval '24 hours') AS recent
FROM logs
WHERE NOT deleted
GROUP BY service, level
"""


async def fetch(conn: asyncpg.Connection) -> Stats:
    by_service: dict[str, int] = {}
    by_level: dict[str, int] = {}
    total = recent = 0
    for row in await conn.fetch(_QUERY):
        by_service[row["service"]] = by_service.get(row["service"], 0) + row["n"]
        by_level[row["level"]] = by_level.get(row["level"], 0) + row["n"]
        total += row["n"]
        recent += row["recent"]
    services = sorted(by_service.items(), key=lambda item: (-item[1], item[0]))
    return Stats(
        total_logs=total,
        services=[ServiceCount(service=name, count=count) for name, count in services],
        by_level=by_level,
        recent_24h=recent,
    )
