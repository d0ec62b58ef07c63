"""Import rules at the request edge: accept or refuse an upload, create its job, read its state."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.auth.principal import Principal
from app.core.config import Settings
from app.core.errors import NotFound, PayloadTooLarge
from app.core.pagination import decode_cursor, encode_cursor
from app.customers import repository as customer_repo
from app.imports import repository as repo
from app.imports.columns import escape_cell
from app.imports.exceptions import InvalidFile, UnsupportedFile
from app.imports.parsing import map_headers
from app.imports.reader import FileProblem, read_header, sniff

JOB_NOT_FOUND = ("Import job not found.", "导入任务不存在。")
ISSUE_HEADERS = ("row", "column", "value", "reason", "level")


def job_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "status": row["status"],
        "dry_run": row["dry_run"],
        "duplicate_policy": row["duplicate_policy"],
        "file_name": row["file_name"],
        "file_format": row["file_format"],
        "encoding": row["encoding"],
        "rows_read": row["rows_read"],
        "imported": row["imported"],
        "updated": row["updated"],
        "skipped": row["skipped"],
        "failed": row["failed"],
        "warnings": row["warnings"],
        "percent": row["percent"],
        "attempts": row["attempts"],
        "error": row["error"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "errors_url": f"/api/v1/imports/{row['id']}/errors",
    }


def _spool(source: BinaryIO, target: Path, limit: int) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with target.open("wb") as out:
        while chunk := source.read(1024 * 1024):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge("The upload is larger than allowed.", "上传文件过大。")
            out.write(chunk)
    return size


def _check_file(
    path: Path, file_name: str, settings: Settings
) -> tuple[str, str | None, list[str]]:
    info = sniff(
        path,
        file_name,
        max_unzipped=settings.import_max_unzipped_bytes,
        max_ratio=settings.import_max_zip_ratio,
    )
    return info.format, info.encoding, read_header(path, info)


async def create_job(
    session: AsyncSession,
    principal: Principal,
    *,
    source: BinaryIO,
    file_name: str,
    dry_run: bool,
    duplicate_policy: str,
    settings: Settings,
) -> dict[str, Any]:
    """Spool the upload, refuse what cannot be a readable sheet, and queue its job."""
    spool_dir = settings.import_spool_dir.expanduser().resolve()
    part = spool_dir / f"upload-{uuid.uuid4().hex}.part"
    try:
        size = await asyncio.to_thread(_spool, source, part, settings.max_upload_bytes)
        try:
            fmt, encoding, header = await asyncio.to_thread(_check_file, part, file_name, settings)
        except FileProblem as exc:
            if exc.kind == "type":
                raise UnsupportedFile(exc.message) from exc
            raise InvalidFile(exc.message) from exc
        mapping = map_headers(header, await customer_repo.custom_fields(session))
        if "name" not in mapping.fields.values():
            raise InvalidFile(
                "The first row must be the column headers and include 客户名称 (or name).",
                "第一行须为表头，并包含“客户名称”（或 name）列。",
            )
        job = await repo.insert_job(
            session,
            {
                "dry_run": dry_run,
                "duplicate_policy": duplicate_policy,
                "file_name": file_name[:255],
                "file_format": fmt,
                "file_size": size,
                "spool_path": str(part),
                "encoding": encoding,
                "created_by": principal.subject,
            },
        )
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    final = spool_dir / f"job-{job['id']}.{fmt}"
    part.rename(final)
    await repo.set_spool_path(session, job["id"], str(final))
    return job_view(job)


async def get_job(session: AsyncSession, principal: Principal, job_id: int) -> dict[str, Any]:
    row = await repo.get_job(session, principal, job_id)
    if row is None:
        raise NotFound(*JOB_NOT_FOUND)
    return job_view(row)


async def list_jobs(
    session: AsyncSession, principal: Principal, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    after = decode_cursor(cursor, 1)
    stmt = repo.list_jobs_statement(principal, int(after[0]) if after else None, limit + 1)
    rows = [dict(r._mapping) for r in (await session.execute(stmt)).all()]
    items = [job_view(r) for r in rows[:limit]]
    next_cursor = encode_cursor([rows[limit - 1]["id"]]) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


def _issue_view(row: Any) -> dict[str, Any]:
    return {
        "row": row.row_no,
        "column": row.column_name,
        "value": row.value,
        "reason": row.reason,
        "level": row.level,
    }


async def issues_page(
    session: AsyncSession, principal: Principal, job_id: int, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    await get_job(session, principal, job_id)
    after = decode_cursor(cursor, 1)
    stmt = repo.issues_statement(job_id, int(after[0]) if after else None, limit + 1)
    rows = (await session.execute(stmt)).all()
    next_cursor = encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None
    return {"items": [_issue_view(r) for r in rows[:limit]], "next_cursor": next_cursor}


async def issues_csv(engine: AsyncEngine, job_id: int, chunk: int = 5000) -> AsyncIterator[bytes]:
    """The whole error report as CSV (UTF-8 with BOM, so Excel reads the Chinese)."""
    yield "\ufeff".encode()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(ISSUE_HEADERS)
    after: int | None = None
    while True:
        async with engine.connect() as conn:
            rows = (await conn.execute(repo.issues_statement(job_id, after, chunk))).all()
        for r in rows:
            v = _issue_view(r)
            writer.writerow([_safe(v[h]) for h in ISSUE_HEADERS])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < chunk:
            return
        after = rows[-1].id


def _safe(value: Any) -> str:
    # The report echoes sheet cells; keep them inert in a spreadsheet.
    return escape_cell("" if value is None else str(value))
