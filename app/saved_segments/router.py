"""Saved segment HTTP routes. `{id}` matches digits only, so /segments/rules, /segments/summary
and the like (the segmentation feature's) never reach these handlers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import SessionDep
from app.core.responses import FastJSONResponse
from app.customers.schemas import CustomerPage, SortKey
from app.saved_segments import service
from app.saved_segments.schemas import (
    SegmentCreate,
    SegmentDetail,
    SegmentPage,
    SegmentRead,
    SegmentUpdate,
)

router = APIRouter(prefix="/segments", tags=["segments"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such segment, or a private one of someone else"}
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    403: {"description": "Only the owner (or an admin) changes a segment"},
    409: {"description": "You already have a segment with this name"},
    422: {"description": "Invalid input; `errors` names each field"},
}


@router.get("", response_model=SegmentPage, responses={422: {"description": "Invalid cursor"}})
async def list_segments(
    session: SessionDep,
    principal: Annotated[Principal, require("segments:read")],
    shared: Annotated[
        bool | None, Query(description="Only shared (true) or only private (false) ones")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> SegmentPage:
    """Saved segments you may see: the shared ones and your own."""
    return await service.list_segments(
        session, principal, shared=shared, limit=limit, cursor=cursor
    )


@router.post("", response_model=SegmentRead, status_code=201, responses=WRITE_ERRORS)
async def create_segment(
    body: SegmentCreate,
    session: SessionDep,
    principal: Annotated[Principal, require("segments:write")],
) -> SegmentRead:
    """Save a customer-list filter under a name, private or shared."""
    return await service.create(session, principal, body)


@router.get("/{id:int}", response_model=SegmentDetail, responses=NOT_FOUND)
async def get_segment(
    id: int, session: SessionDep, principal: Annotated[Principal, require("segments:read")]
) -> SegmentDetail:
    """One saved segment with the live count of its members you may see."""
    return await service.get(session, principal, id)


@router.patch("/{id:int}", response_model=SegmentRead, responses=WRITE_ERRORS)
async def update_segment(
    id: int,
    body: SegmentUpdate,
    session: SessionDep,
    principal: Annotated[Principal, require("segments:write")],
) -> SegmentRead:
    """Rename, refilter, share or unshare your segment."""
    return await service.update(session, principal, id, body)


@router.delete("/{id:int}", status_code=204, responses=WRITE_ERRORS)
async def delete_segment(
    id: int, session: SessionDep, principal: Annotated[Principal, require("segments:write")]
) -> Response:
    """Delete your segment (its customers are untouched)."""
    await service.delete(session, principal, id)
    return Response(status_code=204)


@router.get(
    "/{id:int}/customers",
    response_model=CustomerPage,
    responses={
        **NOT_FOUND,
        403: {"description": "Needs customers:read as well"},
        422: {"description": "Invalid sort or cursor"},
    },
)
async def list_segment_customers(
    id: int,
    session: SessionDep,
    principal: Annotated[Principal, require("segments:read")],
    sort: SortKey | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
    with_count: bool = False,
) -> Response:
    """The segment's current members you may see, paged exactly like GET /customers."""
    page = await service.members(
        session, principal, id, sort=sort, limit=limit, cursor=cursor, with_count=with_count
    )
    return FastJSONResponse(page)
