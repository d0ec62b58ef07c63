"""All saved-segment SQL. Which segments a caller may see or change lives here only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, delete, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.permissions import Role
from app.auth.principal import Principal
from app.models.saved_segment import SavedSegment

S = SavedSegment.__table__.c


def visible(principal: Principal) -> ColumnElement[bool]:
    """Shared segments and the caller's own; an admin sees every segment."""
    if principal.role == Role.admin:
        return true()
    return or_(S.shared, S.owner == principal.subject)


def manageable(principal: Principal) -> ColumnElement[bool]:
    """Only the owner (or an admin) renames, refilters, shares or deletes a segment."""
    if principal.role == Role.admin:
        return true()
    return S.owner == principal.subject


async def get(
    session: AsyncSession, principal: Principal, segment_id: int, *, for_change: bool = False
) -> SavedSegment | None:
    cond = manageable(principal) if for_change else visible(principal)
    return await session.scalar(select(SavedSegment).where(SavedSegment.id == segment_id, cond))


def list_statement(
    principal: Principal, *, shared: bool | None, after_id: int | None, limit: int
) -> Select[SavedSegment]:
    stmt = select(SavedSegment).where(visible(principal))
    if shared is not None:
        stmt = stmt.where(S.shared.is_(shared))
    if after_id is not None:
        stmt = stmt.where(S.id > after_id)
    return stmt.order_by(S.id).limit(limit)


async def list_segments(
    session: AsyncSession,
    principal: Principal,
    *,
    shared: bool | None,
    after_id: int | None,
    limit: int,
) -> list[SavedSegment]:
    stmt = list_statement(principal, shared=shared, after_id=after_id, limit=limit)
    return list((await session.scalars(stmt)).all())


async def insert_segment(session: AsyncSession, values: dict[str, Any]) -> SavedSegment | None:
    """The new segment, or None when its owner already has one with that name."""
    new_id = await session.scalar(
        insert(SavedSegment).values(**values).on_conflict_do_nothing().returning(S.id)
    )
    if new_id is None:
        return None
    return await session.get(SavedSegment, new_id)


async def update_segment(session: AsyncSession, segment_id: int, values: dict[str, Any]) -> bool:
    """False when the new name is taken among the owner's segments."""
    try:
        async with session.begin_nested():
            await session.execute(
                update(SavedSegment)
                .where(S.id == segment_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
    except IntegrityError:
        return False
    return True


async def delete_segment(session: AsyncSession, segment_id: int) -> None:
    await session.execute(delete(SavedSegment).where(S.id == segment_id))
