"""Custom field definitions (GET for everyone signed in; changes for admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response

from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import SessionDep
from app.fields import service
from app.fields.schemas import CustomFieldCreate, CustomFieldRead, CustomFieldUpdate

router = APIRouter(prefix="/fields", tags=["fields"])


@router.get("", response_model=list[CustomFieldRead])
async def list_fields(
    session: SessionDep,
    _: Annotated[Principal, require("meta:read")],
    include_retired: bool = False,
) -> list[CustomFieldRead]:
    """The custom fields customers carry (values live in each customer's `custom`)."""
    return await service.list_fields(session, include_retired=include_retired)


@router.post("", response_model=CustomFieldRead, status_code=201, responses={409: {}, 422: {}})
async def create_field(
    body: CustomFieldCreate,
    session: SessionDep,
    principal: Annotated[Principal, require("fields:admin")],
) -> CustomFieldRead:
    """Define a custom field: key, label, type, enum options, required."""
    return await service.create(session, principal, body)


@router.patch("/{key}", response_model=CustomFieldRead, responses={404: {}, 422: {}})
async def update_field(
    key: str,
    body: CustomFieldUpdate,
    session: SessionDep,
    principal: Annotated[Principal, require("fields:admin")],
) -> CustomFieldRead:
    """Change a field's label, add enum options, or make it (not) required."""
    return await service.update(session, principal, key, body)


@router.delete("/{key}", status_code=204, responses={404: {}})
async def retire_field(
    key: str, session: SessionDep, principal: Annotated[Principal, require("fields:admin")]
) -> Response:
    """Retire a field: no longer accepted on writes; stored values stay filterable."""
    await service.retire(session, principal, key)
    return Response(status_code=204)
