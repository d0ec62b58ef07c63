"""Records an ingested event's interaction drafts against the customer, through the
interactions service (which recomputes the customer's tiers in the same transaction)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.auth.principal import Principal
from app.core.db import Writer
from app.interactions import service as interactions
from app.interactions.schemas import InteractionCreate


async def record(
    session: Writer,
    principal: Principal,
    code: str,
    drafts: list[dict[str, Any]],
    *,
    customer_id: int | None = None,
) -> list[int]:
    """`customer_id`: the customer's row is already locked by the caller (no second lock)."""
    latest_allowed = datetime.now(UTC) + timedelta(minutes=4)
    ids = []
    for draft in drafts:
        occurred = min(draft["occurred_at"], latest_allowed)  # a sender's clock may run ahead
        data = InteractionCreate(
            customer_code=code,
            occurred_at=occurred,
            channel=draft["channel"],
            kind=draft["kind"],
            direction=draft["direction"],
            summary=draft["summary"],
        )
        if customer_id is not None:
            created = await interactions.create_locked(
                session, principal, data, (customer_id, code)
            )
        else:
            created = await interactions.create(session, principal, data)
        ids.append(int(created["id"]))
    return ids
