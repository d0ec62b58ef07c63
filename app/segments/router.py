"""Segmentation routes: rules (versioned), on-demand recompute, summary, a customer's classes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import SessionDep
from app.segments import service
from app.segments.rules import SegmentRules
from app.segments.schemas import (
    CustomerSegments,
    RulesRead,
    RulesUpdated,
    SegmentSummary,
    SweepResult,
)

router = APIRouter(prefix="/segments", tags=["segments"])
customer_router = APIRouter(prefix="/customers", tags=["segments"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such customer, or not visible to you"}
}


@router.get("/rules", response_model=RulesRead, responses={404: {}})
async def get_rules(
    session: SessionDep,
    _: Annotated[Principal, require("segments:read")],
    version: Annotated[
        int | None, Query(ge=1, le=2_147_483_647, description="An earlier version")
    ] = None,
) -> dict[str, Any]:
    """The segmentation rules in force (or an earlier version)."""
    return await service.get_rules(session, version)


@router.put("/rules", response_model=RulesUpdated, responses={422: {}})
async def put_rules(
    body: SegmentRules,
    session: SessionDep,
    principal: Annotated[Principal, require("rules:admin")],
) -> dict[str, Any]:
    """Store a new rules version (the whole document) and recompute every customer with it."""
    return await service.put_rules(session, principal, body)


@router.post(
    "/recompute",
    response_model=SweepResult,
    responses={409: {"description": "A sweep is already running"}},
)
async def recompute(
    session: SessionDep, principal: Annotated[Principal, require("rules:admin")]
) -> dict[str, Any]:
    """Run the whole-base sweep now: time-driven classes, RFM quintiles, pool release."""
    return await service.recompute_now(session, principal)


@router.get("/summary", response_model=SegmentSummary)
async def segment_summary(
    session: SessionDep, principal: Annotated[Principal, require("segments:read")]
) -> dict[str, Any]:
    """Customers per class in every dimension, over the customers you may see."""
    return await service.summary(session, principal)


@customer_router.get("/{code}/segments", response_model=CustomerSegments, responses=NOT_FOUND)
async def customer_segments(
    code: str, session: SessionDep, principal: Annotated[Principal, require("segments:read")]
) -> dict[str, Any]:
    """A customer's classes, the facts and rules behind them, and its recent class changes."""
    return await service.customer_segments(session, principal, code)
