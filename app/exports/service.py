"""Exporting a filtered customer list as CSV or XLSX: the caller's visibility and masking apply
(rows come from the customer list query and `to_public`), cells are made formula-safe, and every
export is audited with its filter and row count."""

from __future__ import annotations

import asyncio
import csv
import io
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.audit import service as audit
from app.auth.principal import Principal
from app.core.config import get_settings
from app.customers import enums
from app.customers import repository as customer_repo
from app.customers import service as customer_service
from app.customers.schemas import CustomerFilter
from app.exports import repository as repo
from app.imports.columns import COLUMNS, escape_cell

PAGE = 2000


@dataclass
class ExportPlan:
    principal: Principal
    filters: dict[str, Any]
    extra: list[ColumnElement[bool]]
    chinese: bool
    custom_fields: list[tuple[str, str]]  # (key, label)
    sources: dict[str, str]
    owners: dict[int, str]
    count: int
    now: datetime
    tz: ZoneInfo

    def header(self) -> list[str]:
        names = [c.zh if self.chinese else c.field for c in COLUMNS]
        names += [label if self.chinese else f"custom.{key}" for key, label in self.custom_fields]
        return names


async def prepare(
    session: AsyncSession,
    principal: Principal,
    filters: CustomerFilter,
    *,
    fmt: str,
    chinese: bool,
) -> ExportPlan:
    """Everything the stream needs, and the audit row (written before any row leaves)."""
    extra = await customer_service.custom_filter_conditions(session, filters.custom)
    fdict = filters.model_dump()
    now = datetime.now(UTC)
    count = int(
        await session.scalar(customer_repo.count_statement(principal, fdict, now, extra)) or 0
    )
    fields = await customer_repo.custom_fields(session)
    sources = {ch.code: ch.label for ch in await customer_repo.source_channels(session)}
    await audit.record(
        session,
        actor=principal,
        action="customer.export",
        entity_type="customer",
        changes={
            "export": {
                "before": None,
                "after": {
                    "filter": filters.model_dump(mode="json", exclude_defaults=True),
                    "count": count,
                    "format": fmt,
                    "headers": "zh" if chinese else "en",
                },
            }
        },
    )
    return ExportPlan(
        principal=principal,
        filters=fdict,
        extra=extra,
        chinese=chinese,
        custom_fields=[(f.key, f.label) for f in fields],
        sources=sources,
        owners=await repo.owner_emails(session),
        count=count,
        now=now,
        tz=ZoneInfo(get_settings().timezone),
    )


def _text(value: Any, tz: ZoneInfo) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat()  # the business's clock, offset included
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _contacts(contacts: list[dict[str, Any]]) -> str:
    if not contacts:
        return ""
    if all(set(c) <= {"name"} or not any(v for k, v in c.items() if k != "name") for c in contacts):
        return "、".join(str(c.get("name") or "") for c in contacts)
    return orjson.dumps(contacts).decode()


def row_cells(public: dict[str, Any], plan: ExportPlan) -> list[str]:
    zh = plan.chinese
    out: list[str] = []
    for col in COLUMNS:
        f = col.field
        value: Any
        if f in ("province", "city"):
            value = public["region"][f]
        elif f == "contacts":
            value = _contacts(public["contacts"])
        elif f == "owner":
            owner = public["owner_id"]
            value = plan.owners.get(owner, str(owner)) if owner is not None else None
        elif f == "industry":
            value = public["industry_label"] if zh else public["industry"]
        elif f == "source":
            code = public["source"]
            value = plan.sources.get(code, code) if zh and code else code
        elif f in ("need_tags", "products"):
            value = "、".join(public[f])
        elif f == "flags":
            value = "、".join(enums.ENUMS["flag"].get(x, x) if zh else x for x in public["flags"])
        else:
            value = public.get(f)
            if zh and col.enum and value is not None:
                value = enums.ENUMS[col.enum].get(value, value)
        out.append(escape_cell(_text(value, plan.tz)))
    custom = public["custom"] or {}
    out += [escape_cell(_text(custom.get(key), plan.tz)) for key, _ in plan.custom_fields]
    return out


async def pages(engine: AsyncEngine, plan: ExportPlan) -> AsyncIterator[list[list[str]]]:
    """Rows in creation order, a keyset page at a time (on the primary key, so a full export
    never sorts the base), each page on a short-lived connection."""
    conds, _ = customer_repo.list_conditions(plan.principal, plan.filters, plan.now, plan.extra)
    after = 0
    while True:
        stmt = repo.page_statement(conds, after, PAGE)
        async with engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        yield [row_cells(customer_service.to_public(dict(r), plan.principal), plan) for r in rows]
        if len(rows) < PAGE:
            return
        after = rows[-1]["id"]


async def csv_stream(engine: AsyncEngine, plan: ExportPlan) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")  # Excel reads UTF-8 Chinese only with a BOM
    writer.writerow(plan.header())
    async for page in pages(engine, plan):
        writer.writerows(page)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


async def xlsx_file(engine: AsyncEngine, plan: ExportPlan) -> Path:
    """Write the workbook in openpyxl's write-only mode (rows go to disk, not memory)."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("客户" if plan.chinese else "customers")
    ws.append(plan.header())
    async for page in pages(engine, plan):
        await asyncio.to_thread(_append, ws, page)
    handle = tempfile.NamedTemporaryFile(suffix=".xlsx", delete=False)  # noqa: SIM115
    handle.close()
    await asyncio.to_thread(wb.save, handle.name)
    return Path(handle.name)


def _append(ws: Any, page: list[list[str]]) -> None:
    for row in page:
        ws.append(row)


async def file_chunks(path: Path, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    fh = await asyncio.to_thread(path.open, "rb")
    try:
        while data := await asyncio.to_thread(fh.read, chunk):
            yield data
    finally:
        fh.close()
        await asyncio.to_thread(path.unlink, missing_ok=True)
