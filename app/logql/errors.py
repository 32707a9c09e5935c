"""LogQL's errors, worded as Loki words them (Grafana shows the message as it is)."""

from __future__ import annotations

from app.errors import BadRequest


class ParseError(BadRequest):
    """`parse error at line 1, col 15: syntax error: unexpected …`: a 400, as Loki answers it."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(f"parse error at line {line}, col {col}: {message}")

    @classmethod
    def bare(cls, message: str) -> ParseError:
        """An error of the whole query, which Loki words without a position: `parse error : …`."""
        error = cls(1, 1, message)
        error.message = f"parse error : {message}"
        error.args = (error.message,)
        return error


class QueryError(BadRequest):
    """A query that parses but cannot run as asked (a limit, a wrong type): a 400 naming why."""
