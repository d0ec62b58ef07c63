"""Duplicate candidates, merge and undo. Mounted before the customer router (static paths)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import SessionDep
from app.core.responses import FastJSONResponse
from app.customers.schemas import CustomerRead
from app.identity import service
from app.identity.schemas import DuplicatePage, MergeRequest, ScanResult

router = APIRouter(prefix="/customers", tags=["identity"])
ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Not allowed"},
    404: {"description": "Not found or not visible"},
    422: {"description": "Invalid request"},
}


@router.get("/duplicates", response_model=DuplicatePage)
async def list_duplicates(
    session: SessionDep,
    principal: Annotated[Principal, require("customers:read")],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Response:
    """Pending duplicate candidates among the customers you can see, best first."""
    return FastJSONResponse(
        await service.list_candidates(session, principal, limit=limit, cursor=cursor)
    )


@router.post("/duplicates/scan", response_model=ScanResult)
async def scan_duplicates(
    session: SessionDep,
    _: Annotated[Principal, require("merge:write")],
    full: bool = False,
) -> ScanResult:
    """Look for similar names (fuzzy) among recently changed customers, or all with full=true."""
    return ScanResult(new_candidates=await service.scan(session, full=full))


@router.post("/duplicates/{candidate_id}/dismiss", status_code=204, responses=ERRORS)
async def dismiss_duplicate(
    candidate_id: int, session: SessionDep, principal: Annotated[Principal, require("merge:write")]
) -> Response:
    """Mark a candidate pair as not the same customer."""
    await service.dismiss(session, principal, candidate_id)
    return Response(status_code=204)


@router.post("/merge", response_model=CustomerRead, responses=ERRORS)
async def merge_customers(
    body: MergeRequest, session: SessionDep, principal: Annotated[Principal, require("merge:write")]
) -> Response:
    """Merge customers into a survivor; the merged codes then redirect to it."""
    return FastJSONResponse(await service.merge(session, principal, body.survivor, body.merged))


@router.post("/merges/{merge_id}/undo", response_model=CustomerRead, responses=ERRORS)
async def undo_merge(
    merge_id: int,
    session: SessionDep,
    principal: Annotated[Principal, require("customers:restore")],
) -> Response:
    """Undo a merge: the merged customers and their records come back."""
    return FastJSONResponse(await service.undo(session, principal, merge_id))
