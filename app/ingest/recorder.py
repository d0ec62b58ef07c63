"""Records an ingested event's interaction drafts against the customer.

Interactions arrive with the interactions feature (issue 4); until it is merged this records
nothing and the customer side of ingestion (identity, creation, inbox) works on its own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal


async def record(
    session: AsyncSession, principal: Principal, code: str, drafts: list[dict[str, Any]]
) -> None:
    del session, principal, code, drafts
