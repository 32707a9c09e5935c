"""What every front door that stores logs shares (POST /logs, POST /v1/logs): the body read within the
worker's memory budget and decoded, and the validated rows handed to the writer with their idempotency
claim, answered only once committed. One path, so durability, idempotency, limits and metrics are the
same whatever format the logs arrived in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request, Response

from app.config import Settings
from app.intake import body, documents, idempotency
from app.intake.decode import content_encoding, decode
from app.intake.rows import LazyRows
from app.intake.writer import Batch, Row, Writer


class Intake:
    def __init__(self, settings: Settings, writer: Writer) -> None:
        self.settings = settings
        self.writer = writer
        self.budget = body.Budget(settings.body_memory_limit)
        self.in_flight = idempotency.InFlight()

    @asynccontextmanager
    async def decoded_body(self, request: Request) -> AsyncIterator[bytes]:
        """The request's body, decompressed; its bytes count against the budget until the block ends."""
        encoding = content_encoding(request.headers.get("content-encoding"))
        limit = self.settings.max_body_bytes
        async with self.budget.hold() as held:
            raw = await body.read(request, self.settings, held)
            decoded = decode(raw, encoding, limit)
            if decoded is not raw:
                held.take(len(decoded))
            yield decoded

    async def store(
        self,
        request: Request,
        rows: list[Row] | LazyRows,
        answer: bytes,
        *,
        claim: idempotency.Claim | None,
        media_type: str = "application/json",
        ids: documents.Documents | None = None,
    ) -> Response:
        """Write the rows; the answer once committed (or the first answer again for a repeated key). With
        document `ids`, rows whose id is taken are not written and the answer is `ids.answer`'s."""
        if claim is None:
            outcome = await self.writer.write(Batch(rows, answer, documents=ids))
        else:
            async with self.in_flight.hold(claim.key):
                outcome = await self.writer.write(Batch(rows, answer, claim))
        if outcome.replayed:
            request.state.replayed = True
            return Response(outcome.response, media_type=media_type, headers={"Idempotent-Replayed": "true"})
        request.state.saved = len(rows)
        return Response(outcome.response, media_type=media_type)
