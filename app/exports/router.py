"""Export HTTP routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import SessionDep
from app.customers.dependencies import filter_from_query, filter_query_docs
from app.customers.schemas import CustomerFilter
from app.exports import service
from app.saved_segments import service as saved_segments

router = APIRouter(prefix="/exports", tags=["exports"])

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}, XLSX_TYPE: {}}, "description": "The file, streamed"},
    422: {"description": "Invalid filter"},
}


@router.get(
    "/customers",
    response_class=StreamingResponse,
    responses=RESPONSES,
    dependencies=[Depends(filter_query_docs)],
)
async def export_customers(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, require("exports:read")],
    filters: Annotated[CustomerFilter, Depends(filter_from_query)],
    format: Literal["csv", "xlsx"] = "csv",
    headers: Literal["en", "zh"] = "en",
    segment_id: Annotated[
        int | None, Query(description="Export a saved segment's members (your visible ones)")
    ] = None,
) -> Response:
    """Export the customers you may see (same filters as the list) as CSV or XLSX; audited."""
    if segment_id is not None:
        filters = await saved_segments.filter_of(session, principal, segment_id)
    plan = await service.prepare(session, principal, filters, fmt=format, chinese=headers == "zh")
    engine = request.app.state.engine
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    disposition = {"Content-Disposition": f'attachment; filename="customers-{stamp}.{format}"'}
    count = {"X-Total-Count": str(plan.count)}
    if format == "xlsx":
        path = await service.xlsx_file(engine, plan)
        return StreamingResponse(
            service.file_chunks(path), media_type=XLSX_TYPE, headers={**disposition, **count}
        )
    return StreamingResponse(
        service.csv_stream(engine, plan),
        media_type="text/csv; charset=utf-8",
        headers={**disposition, **count},
    )
