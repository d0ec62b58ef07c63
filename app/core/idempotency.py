"""Idempotency-Key for retryable writes: same key + same body → the stored answer; same key +
another body → 422. Keys are scoped to the caller and reserved in the request's transaction,
so a concurrent retry waits for the first and then replays its answer."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from sqlalchemy import cast, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert

from app.core.db import Writer
from app.core.errors import ValidationFailed, field_error
from app.models.customer import IdempotencyKey


def request_hash(scope: str, payload: Any) -> str:
    body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(scope.encode() + b"\0" + body).hexdigest()


async def replay_or_reserve(
    session: Writer, subject: str, key: str, scope: str, payload: Any
) -> dict[str, Any] | None:
    """The stored answer for a repeated request, or None after reserving the key."""
    digest = request_hash(scope, payload)
    inserted = await session.scalar(
        insert(IdempotencyKey)
        .values(principal=subject, key=key, request_hash=digest)
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.key)
    )
    if inserted is not None:
        return None
    # Columns, not the entity: `session` may be a bare connection (no ORM).
    stored = (
        await session.execute(
            select(IdempotencyKey.request_hash, IdempotencyKey.response).where(
                IdempotencyKey.principal == subject, IdempotencyKey.key == key
            )
        )
    ).first()
    if stored is None or stored.request_hash != digest or stored.response is None:
        raise ValidationFailed(
            "This Idempotency-Key was used with a different request.",
            "该 Idempotency-Key 已用于另一个不同的请求。",
            errors=[field_error("Idempotency-Key", "reused with a different body")],
        )
    response: dict[str, Any] = stored.response
    return response


async def remember(
    session: Writer, subject: str, key: str, status_code: int, body: dict[str, Any]
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.principal == subject, IdempotencyKey.key == key)
        .values(
            status_code=status_code,
            response=cast(orjson.loads(orjson.dumps(body, default=str)), JSONB),
        )
    )
