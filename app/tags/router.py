"""Tag HTTP routes: categories, tags, a customer's tags and bulk tagging."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import SessionDep
from app.tags import service
from app.tags.schemas import (
    BulkTagRequest,
    BulkTagResult,
    CustomerTags,
    TagCategoryCreate,
    TagCategoryRead,
    TagCategoryUpdate,
    TagCreate,
    TagPage,
    TagRead,
    TagUpdate,
)

router = APIRouter(prefix="/tags", tags=["tags"])
categories_router = APIRouter(prefix="/tag-categories", tags=["tags"])
# A customer's tags: under /customers, but owned by this feature.
customer_tags_router = APIRouter(prefix="/customers", tags=["tags"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such tag or category"}}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"description": "The name or code is taken, or the category is in use"},
    422: {"description": "Invalid input; `errors` names each field"},
}
CUSTOMER_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The customer is in the shared pool: claim it first"},
    404: {"description": "No such customer (or not visible to you), or no such tag"},
    422: {"description": "Invalid input"},
}


# ---- categories ------------------------------------------------------------------------------


@categories_router.get("", response_model=list[TagCategoryRead])
async def list_tag_categories(
    session: SessionDep, _: Annotated[Principal, require("tags:read")]
) -> list[TagCategoryRead]:
    """Tag categories: the defaults (need type, decision stage, trait, campaign) and added ones."""
    return await service.list_categories(session)


@categories_router.post("", response_model=TagCategoryRead, status_code=201, responses=WRITE_ERRORS)
async def create_tag_category(
    body: TagCategoryCreate,
    session: SessionDep,
    principal: Annotated[Principal, require("tags:write")],
) -> TagCategoryRead:
    """Add a tag category (code and Chinese label)."""
    return await service.create_category(session, principal, body)


@categories_router.patch("/{code}", response_model=TagCategoryRead, responses=WRITE_ERRORS)
async def update_tag_category(
    code: str,
    body: TagCategoryUpdate,
    session: SessionDep,
    principal: Annotated[Principal, require("tags:write")],
) -> TagCategoryRead:
    """Rename a tag category's label (its code is fixed)."""
    return await service.update_category(session, principal, code, body)


@categories_router.delete("/{code}", status_code=204, responses=WRITE_ERRORS)
async def delete_tag_category(
    code: str, session: SessionDep, principal: Annotated[Principal, require("tags:write")]
) -> Response:
    """Delete an added, empty tag category (default ones stay)."""
    await service.delete_category(session, principal, code)
    return Response(status_code=204)


# ---- tags ------------------------------------------------------------------------------------


@router.get("", response_model=TagPage, responses={422: {"description": "Invalid cursor"}})
async def list_tags(
    session: SessionDep,
    principal: Annotated[Principal, require("tags:read")],
    category: Annotated[str | None, Query(max_length=40, description="Category code")] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=40, description="Name part")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
    with_count: Annotated[
        bool, Query(description="Add how many customers you may see carry each tag")
    ] = False,
) -> TagPage:
    """Tags by category and name, a keyset page at a time."""
    return await service.list_tags(
        session,
        principal,
        category=category,
        q=q,
        limit=limit,
        cursor=cursor,
        with_count=with_count,
    )


@router.post("", response_model=TagRead, status_code=201, responses=WRITE_ERRORS)
async def create_tag(
    body: TagCreate, session: SessionDep, principal: Annotated[Principal, require("tags:write")]
) -> TagRead:
    """Create a tag in a category; names are unique per category, ignoring letter case."""
    return await service.create_tag(session, principal, body)


@router.patch("/{id:int}", response_model=TagRead, responses=WRITE_ERRORS)
async def update_tag(
    id: int,
    body: TagUpdate,
    session: SessionDep,
    principal: Annotated[Principal, require("tags:write")],
) -> TagRead:
    """Rename a tag, change its description or move it to another category."""
    return await service.update_tag(session, principal, id, body)


@router.delete("/{id:int}", status_code=204, responses=NOT_FOUND)
async def delete_tag(
    id: int, session: SessionDep, principal: Annotated[Principal, require("tags:write")]
) -> Response:
    """Delete a tag and take it off every customer."""
    await service.delete_tag(session, principal, id)
    return Response(status_code=204)


@router.post(
    "/{id:int}/bulk",
    response_model=BulkTagResult,
    responses={**NOT_FOUND, 422: {"description": "Invalid input or unknown segment"}},
)
async def bulk_tag(
    id: int,
    body: BulkTagRequest,
    session: SessionDep,
    principal: Annotated[Principal, require("tags:write")],
) -> BulkTagResult:
    """Tag or untag a list of codes or a saved segment's members in one idempotent operation."""
    return await service.bulk(session, principal, id, body)


# ---- a customer's tags -----------------------------------------------------------------------


@customer_tags_router.put(
    "/{code}/tags/{tag_id}", response_model=CustomerTags, responses=CUSTOMER_ERRORS
)
async def tag_customer(
    code: str,
    tag_id: int,
    session: SessionDep,
    principal: Annotated[Principal, require("customers:write")],
) -> CustomerTags:
    """Put a tag on a customer you may change (idempotent); returns its tags."""
    return await service.tag_customer(session, principal, code, tag_id)


@customer_tags_router.delete("/{code}/tags/{tag_id}", status_code=204, responses=CUSTOMER_ERRORS)
async def untag_customer(
    code: str,
    tag_id: int,
    session: SessionDep,
    principal: Annotated[Principal, require("customers:write")],
) -> Response:
    """Take a tag off a customer you may change (idempotent)."""
    await service.untag_customer(session, principal, code, tag_id)
    return Response(status_code=204)
