"""Consents, audited reveals of sensitive fields, data-subject export and erasure."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response

from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import SessionDep
from app.core.responses import FastJSONResponse
from app.privacy import service
from app.privacy.schemas import (
    ConsentCreate,
    ConsentRead,
    ConsentWithdraw,
    ErasureResult,
    RevealRequest,
)

router = APIRouter(prefix="/customers/{code}", tags=["privacy"])
ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Not allowed"},
    404: {"description": "No such customer, or not visible to you"},
}


@router.get("/consents", response_model=list[ConsentRead], responses=ERRORS)
async def list_consents(
    code: str, session: SessionDep, principal: Annotated[Principal, require("customers:read")]
) -> list[ConsentRead]:
    """The customer's consents: purpose, scope, time, channel, evidence, withdrawal."""
    return await service.list_consents(session, principal, code)


@router.post("/consents", response_model=ConsentRead, status_code=201, responses=ERRORS)
async def add_consent(
    code: str,
    body: ConsentCreate,
    session: SessionDep,
    principal: Annotated[Principal, require("customers:write")],
) -> ConsentRead:
    """Record a consent the customer gave."""
    return await service.add_consent(session, principal, code, body)


@router.post(
    "/consents/{consent_id}/withdraw", response_model=ConsentRead, responses={**ERRORS, 409: {}}
)
async def withdraw_consent(
    code: str,
    consent_id: int,
    body: ConsentWithdraw,
    session: SessionDep,
    principal: Annotated[Principal, require("customers:write")],
) -> ConsentRead:
    """Withdraw a consent; processing for its purpose stops."""
    return await service.withdraw_consent(session, principal, code, consent_id, body.reason)


@router.post("/reveal", responses=ERRORS)
async def reveal(
    code: str,
    body: RevealRequest,
    session: SessionDep,
    principal: Annotated[Principal, require("sensitive:read")],
) -> dict[str, str | None]:
    """Show ID number or bank account in clear; the reveal is audited."""
    return await service.reveal(session, principal, code, list(body.fields))


@router.get("/export", responses=ERRORS)
async def export_subject(
    code: str, session: SessionDep, principal: Annotated[Principal, require("privacy:admin")]
) -> Response:
    """Everything held about the customer, as one JSON document (audited)."""
    doc = await service.export_subject(session, principal, code)
    return Response(
        service.dumps(doc),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{code}.json"'},
    )


@router.post("/erase", response_model=ErasureResult, responses=ERRORS)
async def erase(
    code: str, session: SessionDep, principal: Annotated[Principal, require("privacy:admin")]
) -> Response:
    """Erase the customer's personal data everywhere; aggregates and audit are kept."""
    return FastJSONResponse(await service.erase(session, principal, code))
