"""Per-request context (request id, actor) readable from services without seeing the Request."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
