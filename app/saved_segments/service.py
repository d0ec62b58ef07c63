"""Saved segments: a named CustomerFilter, private or shared, whose members are always current.

Members and counts go through the customer list itself (customer_service.list_customers and
friends), so a segment can never disagree with GET /customers given the same filter, and
always applies the caller's own visibility.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.principal import Principal
from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed, field_error
from app.core.pagination import decode_cursor, encode_cursor
from app.customers import service as customer_service
from app.customers.schemas import CustomerFilter
from app.models.saved_segment import SavedSegment
from app.saved_segments import repository as repo
from app.saved_segments.schemas import (
    SegmentCreate,
    SegmentDetail,
    SegmentPage,
    SegmentRead,
    SegmentUpdate,
)

NOT_FOUND = ("Segment not found.", "客群不存在。")


def stored_filter(f: CustomerFilter) -> dict[str, Any]:
    """The JSON a segment keeps: the filter without its defaults, so new filter keys stay off."""
    return f.model_dump(mode="json", exclude_defaults=True)


def load_filter(raw: dict[str, Any]) -> CustomerFilter:
    try:
        return CustomerFilter.model_validate(raw)
    except ValidationError as exc:
        # Only reachable if the filter language dropped something a segment still uses.
        raise Conflict(
            "This segment's filter is no longer valid; edit its filter.",
            "该客群的筛选条件已失效，请修改筛选条件。",
        ) from exc


def _read(s: SavedSegment) -> SegmentRead:
    return SegmentRead(
        id=s.id,
        name=s.name,
        description=s.description,
        filter=load_filter(s.filter),
        shared=s.shared,
        owner=s.owner,
        created_at=s.created_at,
        updated_at=s.updated_at,
        updated_by=s.updated_by,
    )


def _audit_view(s: SavedSegment) -> dict[str, Any]:
    return {"name": s.name, "description": s.description, "filter": s.filter, "shared": s.shared}


async def _check_filter(session: AsyncSession, f: CustomerFilter) -> None:
    """Reject what the list would reject (unknown custom fields, bad ranges) when saving."""
    try:
        await customer_service.custom_filter_conditions(session, f.custom)
    except ValidationFailed as exc:
        for err in exc.errors or []:
            err["field"] = f"filter.{err['field']}"
        raise


def _name_taken() -> Conflict:
    return Conflict(
        "You already have a segment with this name.",
        "您已有同名客群。",
        errors=[field_error("name", "exists among your segments", "duplicate")],
    )


async def _visible(session: AsyncSession, principal: Principal, segment_id: int) -> SavedSegment:
    segment = await repo.get(session, principal, segment_id)
    if segment is None:
        raise NotFound(*NOT_FOUND)
    return segment


async def _manageable(session: AsyncSession, principal: Principal, segment_id: int) -> SavedSegment:
    segment = await _visible(session, principal, segment_id)
    if await repo.get(session, principal, segment_id, for_change=True) is None:
        raise Forbidden("Only the segment's owner can change it.", "只有客群的创建者可以修改它。")
    return segment


async def list_segments(
    session: AsyncSession,
    principal: Principal,
    *,
    shared: bool | None,
    limit: int,
    cursor: str | None,
) -> SegmentPage:
    after = decode_cursor(cursor, 1)
    rows = await repo.list_segments(
        session,
        principal,
        shared=shared,
        after_id=int(after[0]) if after else None,
        limit=limit + 1,
    )
    next_cursor = encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None
    return SegmentPage(items=[_read(s) for s in rows[:limit]], next_cursor=next_cursor)


async def create(session: AsyncSession, principal: Principal, data: SegmentCreate) -> SegmentRead:
    await _check_filter(session, data.filter)
    segment = await repo.insert_segment(
        session,
        {
            "name": data.name,
            "description": data.description,
            "filter": stored_filter(data.filter),
            "shared": data.shared,
            "owner": principal.subject,
            "updated_by": principal.subject,
        },
    )
    if segment is None:
        raise _name_taken()
    await audit.record(
        session,
        actor=principal,
        action="segment.create",
        entity_type="saved_segment",
        entity_id=segment.id,
        changes=audit.diff({}, _audit_view(segment)),
    )
    return _read(segment)


async def get(session: AsyncSession, principal: Principal, segment_id: int) -> SegmentDetail:
    segment = await _visible(session, principal, segment_id)
    count = None
    if principal.has("customers:read"):
        count = await customer_service.count_customers(
            session, principal, load_filter(segment.filter)
        )
    return SegmentDetail(**dict(_read(segment)), count=count)


async def update(
    session: AsyncSession, principal: Principal, segment_id: int, data: SegmentUpdate
) -> SegmentRead:
    segment = await _manageable(session, principal, segment_id)
    before = _audit_view(segment)
    patch = data.model_dump(exclude_unset=True)
    values: dict[str, Any] = {}
    for key in ("name", "shared"):
        if patch.get(key) is not None and patch[key] != before[key]:
            values[key] = patch[key]
    if "description" in patch and patch["description"] != before["description"]:
        values["description"] = patch["description"]
    if data.filter is not None:
        await _check_filter(session, data.filter)
        if stored_filter(data.filter) != segment.filter:
            values["filter"] = stored_filter(data.filter)
    if not values:
        return _read(segment)
    if not await repo.update_segment(
        session, segment_id, {**values, "updated_by": principal.subject}
    ):
        raise _name_taken()
    await session.refresh(segment)
    await audit.record(
        session,
        actor=principal,
        action="segment.update",
        entity_type="saved_segment",
        entity_id=segment_id,
        changes=audit.diff(before, _audit_view(segment)),
    )
    return _read(segment)


async def delete(session: AsyncSession, principal: Principal, segment_id: int) -> None:
    segment = await _manageable(session, principal, segment_id)
    await repo.delete_segment(session, segment_id)
    await audit.record(
        session,
        actor=principal,
        action="segment.delete",
        entity_type="saved_segment",
        entity_id=segment_id,
        changes=audit.diff(_audit_view(segment), {}),
    )


async def members(
    session: AsyncSession,
    principal: Principal,
    segment_id: int,
    *,
    sort: str | None,
    limit: int,
    cursor: str | None,
    with_count: bool,
) -> dict[str, Any]:
    """The segment's members the caller may see: exactly GET /customers with its filter."""
    segment = await _visible(session, principal, segment_id)
    if not principal.has("customers:read"):
        raise Forbidden(
            "Listing members needs the 'customers:read' permission.",
            "查看客群成员需要“customers:read”权限。",
        )
    return await customer_service.list_customers(
        session,
        principal,
        load_filter(segment.filter),
        sort=sort,
        limit=limit,
        cursor=cursor,
        with_count=with_count,
    )


async def filter_of(session: AsyncSession, principal: Principal, segment_id: int) -> CustomerFilter:
    """The filter of a segment the caller may see, for other features (bulk tagging, export)."""
    segment = await repo.get(session, principal, segment_id)
    if segment is None:
        raise ValidationFailed(
            "No such segment.",
            "客群不存在。",
            errors=[field_error("segment_id", "no segment with this id is visible to you")],
        )
    return load_filter(segment.filter)
