"""Audit log read and verification endpoints (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.audit import service
from app.audit.schemas import AuditEntry, AuditPage, AuditVerification
from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import SessionDep
from app.core.pagination import decode_cursor, encode_cursor

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=AuditPage)
async def list_audit(
    request: Request,
    session: SessionDep,
    _: Annotated[Principal, require("audit:read")],
    entity_type: str | None = None,
    entity_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    at_from: Annotated[datetime | None, Query(alias="from")] = None,
    at_to: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> AuditPage:
    """List audit entries, newest first, filtered by entity, actor, action and time."""
    after = decode_cursor(cursor, 1)
    rows = await service.list_entries(
        session,
        request.app.state.engine,
        entity_type=entity_type,
        entity_id=entity_id,
        actor=actor,
        action=action,
        at_from=at_from,
        at_to=at_to,
        before_id=int(after[0]) if after else None,
        limit=limit + 1,
    )
    items = [AuditEntry.model_validate(r, from_attributes=True) for r in rows[:limit]]
    next_cursor = encode_cursor([items[-1].id]) if len(rows) > limit else None
    return AuditPage(items=items, next_cursor=next_cursor)


@router.get("/verify", response_model=AuditVerification)
async def verify_audit(
    request: Request, session: SessionDep, _: Annotated[Principal, require("audit:read")]
) -> AuditVerification:
    """Walk the hash chain and name the first broken row, if any."""
    return AuditVerification(**await service.verify(session, request.app.state.engine))
