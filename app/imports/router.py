"""Import HTTP routes: upload a sheet as a background job, follow it, read its error report."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    BackgroundTasks,
    File,
    Form,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi.responses import StreamingResponse

from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.config import get_settings
from app.core.db import SessionDep
from app.core.responses import FastJSONResponse
from app.imports import service, worker
from app.imports.schemas import DuplicatePolicy, ImportIssuePage, ImportJobPage, ImportJobRead

router = APIRouter(prefix="/imports", tags=["imports"])

JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such import job, or not yours"},
    422: {"description": "Invalid input"},
}
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "The upload is larger than allowed"},
    415: {"description": "Not a CSV or XLSX file"},
    422: {"description": "A broken or unsafe file (zip bomb), or no 客户名称/name column"},
}


@router.post("", response_model=ImportJobRead, status_code=202, responses=UPLOAD_ERRORS)
async def create_import(
    request: Request,
    session: SessionDep,
    background: BackgroundTasks,
    principal: Annotated[Principal, require("imports:write")],
    file: Annotated[UploadFile, File(description="CSV (UTF-8, UTF-8 BOM or GBK) or XLSX")],
    dry_run: Annotated[bool, Form(description="Validate and count; write nothing")] = False,
    duplicate_policy: Annotated[
        DuplicatePolicy,
        Form(
            description="A row matching a customer (code, phone, email, name): skip it, "
            "update the customer with it, or merge it (fill only empty fields)"
        ),
    ] = "skip",
) -> Response:
    """Upload customers as CSV or XLSX; the import runs in the background (202 with its job)."""
    job = await service.create_job(
        session,
        principal,
        source=file.file,
        file_name=file.filename or "upload",
        dry_run=dry_run,
        duplicate_policy=duplicate_policy,
        settings=get_settings(),
    )
    # Started once the response is sent, so the job row it reads is committed.
    background.add_task(worker.start_later, request.app.state.engine, job["id"])
    return FastJSONResponse(
        job,
        status_code=202,
        headers={"Location": f"/api/v1/imports/{job['id']}"},
        background=background,
    )


@router.get("", response_model=ImportJobPage)
async def list_imports(
    session: SessionDep,
    principal: Annotated[Principal, require("imports:write")],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Response:
    """Your import jobs, newest first (an admin sees everyone's)."""
    return FastJSONResponse(await service.list_jobs(session, principal, limit=limit, cursor=cursor))


@router.get("/{job_id}", response_model=ImportJobRead, responses=ERRORS)
async def get_import(
    job_id: JobId, session: SessionDep, principal: Annotated[Principal, require("imports:write")]
) -> Response:
    """An import job's status, progress and counts."""
    return FastJSONResponse(await service.get_job(session, principal, job_id))


@router.get(
    "/{job_id}/errors",
    response_model=ImportIssuePage,
    responses={**ERRORS, 200: {"content": {"text/csv": {}}}},
)
async def get_import_errors(
    request: Request,
    job_id: JobId,
    session: SessionDep,
    principal: Annotated[Principal, require("imports:write")],
    format: Literal["json", "csv"] = "json",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    cursor: str | None = None,
) -> Response:
    """The per-row error report (row, column, value, reason), as JSON pages or one CSV."""
    if format == "csv":
        await service.get_job(session, principal, job_id)
        return StreamingResponse(
            service.issues_csv(request.app.state.engine, job_id),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="import-{job_id}-errors.csv"'},
        )
    page = await service.issues_page(session, principal, job_id, limit=limit, cursor=cursor)
    return FastJSONResponse(page)
