"""Report HTTP routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response

from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import SessionDep
from app.core.responses import FastJSONResponse
from app.reports import service
from app.reports.schemas import DataQualityReport

router = APIRouter(prefix="/reports", tags=["reports"])


@router.get("/data-quality", response_model=DataQualityReport)
async def data_quality(
    session: SessionDep, principal: Annotated[Principal, require("reports:read")]
) -> Response:
    """Completeness of key fields per field and overall, and the data-quality flag counts."""
    return FastJSONResponse(await service.data_quality(session, principal))
