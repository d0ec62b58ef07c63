"""Report routes: overview, weekly, monthly (JSON, or CSV with `Accept: text/csv`), and the
channel acquisition costs that the monthly ROI reads."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request, Response

from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import SessionDep
from app.reporting import csv_export, service
from app.reporting.dependencies import (
    MonthParam,
    WeekParam,
    date_window,
    month_window,
    report_zone,
    wants_csv,
    week_window,
)
from app.reporting.schemas import (
    MONTH_PATTERN,
    ChannelCostList,
    ChannelCostsUpdate,
    MonthlyReport,
    OverviewReport,
    WeeklyReport,
)

router = APIRouter(prefix="/reports", tags=["reports"])

Zone = Annotated[ZoneInfo, Depends(report_zone)]
Reader = Annotated[Principal, require("reports:read")]

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report; with `Accept: text/csv`, the same numbers as one CSV table "
        "(section, key, label, metric, value)",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    },
    422: {"description": "Invalid period or time zone"},
}


def _answer(request: Request, model: type[Any], report: dict[str, Any], name: str) -> Any:
    body = model.model_validate(report).model_dump(mode="json")
    if wants_csv(request):
        return Response(
            csv_export.render(body),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return body


@router.get("/overview", response_model=OverviewReport, responses=CSV_RESPONSE)
async def overview(
    request: Request,
    session: SessionDep,
    principal: Reader,
    zone: Zone,
    date_from: Annotated[
        date | None,
        Query(alias="from", description="Customers acquired on or after this day"),
    ] = None,
    date_to: Annotated[
        date | None, Query(alias="to", description="Customers acquired on or before this day")
    ] = None,
) -> Any:
    """Customers by source, cooperation status, tier, lifecycle, industry, region and owner."""
    window = date_window(date_from, date_to, zone)
    report = await service.overview(session, principal, window)
    return _answer(request, OverviewReport, report, "report-overview")


@router.get("/weekly", response_model=WeeklyReport, responses=CSV_RESPONSE)
async def weekly(
    request: Request,
    session: SessionDep,
    principal: Reader,
    zone: Zone,
    week: WeekParam = None,
    response_hours: Annotated[
        int | None,
        Query(
            ge=1,
            le=720,
            description="An inbound interaction counts as answered when an outbound one follows "
            "within this many hours (default: the service setting, 24)",
        ),
    ] = None,
) -> Any:
    """New customers per channel, response rate, task completion and cadence compliance."""
    window = week_window(week, zone)
    report = await service.weekly(session, principal, window, response_hours=response_hours)
    return _answer(request, WeeklyReport, report, f"report-weekly-{window.label}")


@router.get("/monthly", response_model=MonthlyReport, responses=CSV_RESPONSE)
async def monthly(
    request: Request,
    session: SessionDep,
    principal: Reader,
    zone: Zone,
    month: MonthParam = None,
    top: Annotated[
        int, Query(ge=1, le=50, description="How many complaint and feedback themes")
    ] = 10,
) -> Any:
    """Tier conversion, channel ROI, complaint and feedback themes and data completeness."""
    window = month_window(month, zone)
    report = await service.monthly(session, principal, window, top=top)
    return _answer(request, MonthlyReport, report, f"report-monthly-{window.label}")


@router.get("/channel-costs", response_model=ChannelCostList, responses={422: {}})
async def get_channel_costs(
    session: SessionDep,
    _: Reader,
    month: Annotated[
        str | None,
        Query(pattern=MONTH_PATTERN, description="e.g. 2026-11; default: all"),
    ] = None,
) -> Any:
    """Acquisition cost per source channel and month (every month when none is given)."""
    return await service.channel_costs(session, month)


@router.put("/channel-costs", response_model=ChannelCostList, responses={422: {}})
async def put_channel_costs(
    body: ChannelCostsUpdate,
    session: SessionDep,
    principal: Annotated[Principal, require("reports:admin")],
) -> Any:
    """Set one month's acquisition costs per channel, replacing that month's previous entry."""
    return await service.put_channel_costs(session, principal, body)
