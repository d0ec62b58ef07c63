"""Export SQL beyond the customer list itself: who the owners are."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.user import User


async def owner_emails(session: AsyncSession) -> dict[int, str]:
    rows = (await session.execute(select(User.id, User.email))).all()
    return {int(r.id): str(r.email) for r in rows}
