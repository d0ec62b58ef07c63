"""Export SQL beyond the customer list itself: who the owners are."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.customers.repository import READ_COLUMNS, C
from app.models.user import User


def page_statement(conds: list[ColumnElement[bool]], after_id: int, limit: int) -> Select[Any]:
    """The next page of a filtered list in primary-key order (index-backed, no sort)."""
    return select(*READ_COLUMNS).where(*conds, C.id > after_id).order_by(C.id).limit(limit)


async def owner_emails(session: AsyncSession) -> dict[int, str]:
    rows = (await session.execute(select(User.id, User.email))).all()
    return {int(r.id): str(r.email) for r in rows}
