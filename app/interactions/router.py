"""Interaction routes and the customer timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response

from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import ReadConnectionDep, ReadSessionDep, SessionDep, WriteConnectionDep
from app.core.hotroutes import HotWrite
from app.core.responses import FastJSONResponse
from app.customers.dependencies import parse_if_match
from app.interactions import service
from app.interactions.schemas import (
    Channel,
    Direction,
    InteractionCreate,
    InteractionKind,
    InteractionPage,
    InteractionRead,
    InteractionUpdate,
    Sentiment,
    TimelinePage,
)

router = APIRouter(prefix="/interactions", tags=["interactions"])
customer_router = APIRouter(prefix="/customers", tags=["interactions"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such interaction or customer, or not visible to you"},
    422: {"description": "Invalid input; `errors` names each field"},
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"description": "Not allowed (e.g. a pool customer: claim it first)"},
    412: {"description": "Stale If-Match version"},
}


def _with_etag(body: dict[str, Any], status_code: int = 200) -> FastJSONResponse:
    return FastJSONResponse(body, status_code=status_code, headers={"ETag": f'"{body["version"]}"'})


@router.post("", response_model=InteractionRead, status_code=201, responses=WRITE_ERRORS)
async def create_interaction(
    body: InteractionCreate,
    session: WriteConnectionDep,
    principal: Annotated[Principal, require("interactions:write")],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Record an interaction; the customer's classes are recomputed before this returns.
    Retry safely with Idempotency-Key."""
    created = await service.create(session, principal, body, idempotency_key=idempotency_key)
    response = _with_etag(created, 201)
    response.headers["Location"] = f"/api/v1/interactions/{created['id']}"
    return response


# Answered beside FastAPI when the request is well-formed (app.core.hotroutes).
HOT_WRITES = [HotWrite(create_interaction)]


@router.get("", response_model=InteractionPage, responses=ERRORS)
async def list_interactions(
    session: ReadSessionDep,
    principal: Annotated[Principal, require("interactions:read")],
    customer: Annotated[str | None, Query(description="A customer code")] = None,
    channel: Annotated[list[Channel] | None, Query()] = None,
    kind: Annotated[list[InteractionKind] | None, Query()] = None,
    direction: Annotated[Direction | None, Query()] = None,
    sentiment: Annotated[list[Sentiment] | None, Query()] = None,
    staff: Annotated[str | None, Query(description="A user id or `me`")] = None,
    occurred_from: Annotated[datetime | None, Query(alias="from")] = None,
    occurred_to: Annotated[datetime | None, Query(alias="to")] = None,
    resolved: Annotated[bool | None, Query(description="Complaints resolved or not")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Response:
    """Interactions on customers you may see, newest first, filtered."""
    page = await service.list_interactions(
        session,
        principal,
        customer_code=customer,
        channel=list(channel or []),
        kind=list(kind or []),
        direction=direction,
        sentiment=list(sentiment or []),
        staff=staff,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
        resolved=resolved,
        limit=limit,
        cursor=cursor,
    )
    return FastJSONResponse(page)


@router.get("/{interaction_id}", response_model=InteractionRead, responses=ERRORS)
async def get_interaction(
    interaction_id: int,
    session: ReadConnectionDep,
    principal: Annotated[Principal, require("interactions:read")],
) -> Response:
    """One interaction, with its version as ETag."""
    return _with_etag(await service.get(session, principal, interaction_id))


@router.patch("/{interaction_id}", response_model=InteractionRead, responses=WRITE_ERRORS)
async def update_interaction(
    interaction_id: int,
    body: InteractionUpdate,
    session: SessionDep,
    principal: Annotated[Principal, require("interactions:write")],
    if_match: Annotated[int | None, Depends(parse_if_match)],
) -> Response:
    """Correct an interaction (fields sent only); the customer's classes are recomputed."""
    updated = await service.update(session, principal, interaction_id, body, if_match=if_match)
    return _with_etag(updated)


@customer_router.get("/{code}/timeline", response_model=TimelinePage, responses=ERRORS)
async def customer_timeline(
    code: str,
    session: SessionDep,
    principal: Annotated[Principal, require("interactions:read")],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Response:
    """A customer's interactions, tasks, class changes and edits, newest first."""
    page = await service.timeline(session, principal, code, limit=limit, cursor=cursor)
    return FastJSONResponse(page)
