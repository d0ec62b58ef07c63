"""Enums with Chinese labels, industries and source channels (admins extend the sources)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import SessionDep
from app.core.errors import Conflict, NotFound, field_error
from app.customers import enums
from app.customers.industries import all_industries
from app.customers.repository import clear_definition_cache
from app.models.customer import SourceChannel

router = APIRouter(prefix="/meta", tags=["meta"])


class SourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,29}$")]
    label: Annotated[str, Field(min_length=1, max_length=60)]
    aliases: list[Annotated[str, Field(max_length=60)]] = []


class SourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    label: Annotated[str, Field(min_length=1, max_length=60)] | None = None
    aliases: list[Annotated[str, Field(max_length=60)]] | None = None
    active: bool | None = None


class SourceRead(BaseModel):
    code: str
    label: str
    aliases: list[str]
    builtin: bool
    active: bool


def _source(s: SourceChannel) -> SourceRead:
    return SourceRead(
        code=s.code, label=s.label, aliases=list(s.aliases), builtin=s.builtin, active=s.active
    )


async def _sources(session: AsyncSession) -> list[SourceRead]:
    rows = await session.scalars(select(SourceChannel).order_by(SourceChannel.code))
    return [_source(s) for s in rows.all()]


@router.get("/enums")
async def get_enums(
    session: SessionDep, _: Annotated[Principal, require("meta:read")]
) -> dict[str, Any]:
    """Every enum with its Chinese labels, the GB/T 4754-2017 industries and source channels."""
    out = enums.served()
    out["industry"] = all_industries()
    out["source"] = [
        {"code": s.code, "label": s.label} for s in await _sources(session) if s.active
    ]
    return out


@router.get("/sources", response_model=list[SourceRead])
async def list_sources(
    session: SessionDep, _: Annotated[Principal, require("meta:read")]
) -> list[SourceRead]:
    """Source channels, with aliases accepted on input."""
    return await _sources(session)


@router.post("/sources", response_model=SourceRead, status_code=201, responses={409: {}})
async def create_source(
    body: SourceCreate,
    session: SessionDep,
    principal: Annotated[Principal, require("fields:admin")],
) -> SourceRead:
    """Add a source channel."""
    if await session.get(SourceChannel, body.code) is not None:
        raise Conflict(errors=[field_error("code", "exists", "duplicate")])
    s = SourceChannel(code=body.code, label=body.label, aliases=body.aliases, builtin=False)
    session.add(s)
    await session.flush()
    clear_definition_cache()
    await audit.record(
        session,
        actor=principal,
        action="source.create",
        entity_type="source_channel",
        entity_id=body.code,
        changes={"label": {"before": None, "after": body.label}},
    )
    await session.refresh(s)
    return _source(s)


@router.patch("/sources/{code}", response_model=SourceRead, responses={404: {}})
async def update_source(
    code: str,
    body: SourceUpdate,
    session: SessionDep,
    principal: Annotated[Principal, require("fields:admin")],
) -> SourceRead:
    """Rename a source channel, change its aliases, or deactivate it."""
    s = await session.get(SourceChannel, code)
    if s is None:
        raise NotFound()
    changes = {}
    for attr, value in body.model_dump(exclude_unset=True).items():
        if value is not None and getattr(s, attr) != value:
            changes[attr] = {"before": getattr(s, attr), "after": value}
            setattr(s, attr, value)
    if changes:
        await session.flush()
        clear_definition_cache()
        await audit.record(
            session,
            actor=principal,
            action="source.update",
            entity_type="source_channel",
            entity_id=code,
            changes=changes,
        )
    await session.refresh(s)
    return _source(s)
