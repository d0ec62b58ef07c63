"""Shared pool (公海) routes. The pool itself is `GET /customers?owner=none`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response

from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import SessionDep
from app.core.responses import FastJSONResponse
from app.customers.schemas import CustomerRead
from app.pool import service

router = APIRouter(prefix="/customers", tags=["pool"])


@router.post(
    "/{code}/claim",
    response_model=CustomerRead,
    responses={
        404: {"description": "Not in the shared pool, or not visible to you"},
        409: {"description": "The customer has an owner"},
    },
)
async def claim_customer(
    code: str, session: SessionDep, principal: Annotated[Principal, require("customers:claim")]
) -> Response:
    """Claim a customer from the shared pool; of concurrent claims the first one wins."""
    body: dict[str, Any] = await service.claim(session, principal, code)
    return FastJSONResponse(body, headers={"ETag": f'"{body["version"]}"'})
