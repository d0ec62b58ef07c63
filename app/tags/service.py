"""Tag rules: categories, unique names per category, tagging customers one by one or in bulk."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.principal import Principal
from app.core.errors import Conflict, NotFound, ValidationFailed, field_error
from app.core.pagination import decode_cursor, encode_cursor
from app.customers import service as customer_service
from app.customers.schemas import CustomerFilter
from app.models.tag import TagCategory
from app.saved_segments import service as segment_service
from app.tags import repository as repo
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

TAG_NOT_FOUND = ("Tag not found.", "标签不存在。")
CATEGORY_NOT_FOUND = ("Tag category not found.", "标签分类不存在。")


def _duplicate_name() -> Conflict:
    return Conflict(
        "This category already has a tag with this name.",
        "该分类下已有同名标签。",
        errors=[field_error("name", "exists in this category (letter case ignored)", "duplicate")],
    )


# ---- categories ------------------------------------------------------------------------------


def _category(c: TagCategory) -> TagCategoryRead:
    return TagCategoryRead(code=c.code, label=c.label, builtin=c.builtin, created_at=c.created_at)


async def list_categories(session: AsyncSession) -> list[TagCategoryRead]:
    return [_category(c) for c in await repo.categories(session)]


async def _get_category(session: AsyncSession, code: str) -> TagCategory:
    category = await repo.category_by_code(session, code)
    if category is None:
        raise NotFound(*CATEGORY_NOT_FOUND)
    return category


async def create_category(
    session: AsyncSession, principal: Principal, data: TagCategoryCreate
) -> TagCategoryRead:
    category = await repo.insert_category(session, data.code, data.label)
    if category is None:
        raise Conflict(
            errors=[field_error("code", "a category with this code exists", "duplicate")]
        )
    await audit.record(
        session,
        actor=principal,
        action="tag_category.create",
        entity_type="tag_category",
        entity_id=data.code,
        changes=audit.diff({}, data.model_dump()),
    )
    return _category(category)


async def update_category(
    session: AsyncSession, principal: Principal, code: str, data: TagCategoryUpdate
) -> TagCategoryRead:
    category = await _get_category(session, code)
    if data.label is not None and data.label != category.label:
        changes = audit.diff({"label": category.label}, {"label": data.label})
        category.label = data.label
        await session.flush()
        await audit.record(
            session,
            actor=principal,
            action="tag_category.update",
            entity_type="tag_category",
            entity_id=code,
            changes=changes,
        )
        await session.refresh(category)
    return _category(category)


async def delete_category(session: AsyncSession, principal: Principal, code: str) -> None:
    category = await _get_category(session, code)
    if category.builtin:
        raise Conflict("A default category cannot be deleted.", "默认分类不能删除。")
    if await repo.category_has_tags(session, category.id):
        raise Conflict(
            "The category still has tags; delete or move them first.",
            "该分类下仍有标签，请先删除或移动这些标签。",
        )
    await repo.delete_category(session, category.id)
    await audit.record(
        session,
        actor=principal,
        action="tag_category.delete",
        entity_type="tag_category",
        entity_id=code,
    )


# ---- tags ------------------------------------------------------------------------------------


async def _category_id(session: AsyncSession, code: str) -> int:
    category = await repo.category_by_code(session, code)
    if category is None:
        raise ValidationFailed(
            errors=[field_error("category", "unknown category; GET /tag-categories lists them")]
        )
    return category.id


async def get_tag(session: AsyncSession, tag_id: int, *, lock: bool = False) -> dict[str, Any]:
    tag = await repo.get_tag(session, tag_id, lock=lock)
    if tag is None:
        raise NotFound(*TAG_NOT_FOUND)
    return tag


def _audit_view(tag: dict[str, Any]) -> dict[str, Any]:
    return {k: tag[k] for k in ("name", "category", "description")}


async def list_tags(
    session: AsyncSession,
    principal: Principal,
    *,
    category: str | None,
    q: str | None,
    limit: int,
    cursor: str | None,
    with_count: bool,
) -> TagPage:
    after = decode_cursor(cursor, 3)
    visible = (
        await customer_service.member_ids(session, principal, CustomerFilter())
        if with_count
        else None
    )
    stmt = repo.list_statement(
        category=category, q=q, after=after, limit=limit + 1, visible_customer_ids=visible
    )
    rows = (await session.execute(stmt)).mappings().all()
    items = [TagRead.model_validate(dict(r)) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([last["category"], last["name"], last["id"]])
    return TagPage(items=items, next_cursor=next_cursor)


async def create_tag(session: AsyncSession, principal: Principal, data: TagCreate) -> TagRead:
    category_id = await _category_id(session, data.category)
    tag_id = await repo.insert_tag(
        session,
        {
            "category_id": category_id,
            "name": data.name,
            "description": data.description,
            "created_by": principal.subject,
            "updated_by": principal.subject,
        },
    )
    if tag_id is None:
        raise _duplicate_name()
    tag = await get_tag(session, tag_id)
    await audit.record(
        session,
        actor=principal,
        action="tag.create",
        entity_type="tag",
        entity_id=tag_id,
        changes=audit.diff({}, _audit_view(tag)),
    )
    return TagRead.model_validate(tag)


async def update_tag(
    session: AsyncSession, principal: Principal, tag_id: int, data: TagUpdate
) -> TagRead:
    before = await get_tag(session, tag_id)
    patch = data.model_dump(exclude_unset=True)
    values: dict[str, Any] = {}
    if patch.get("category") is not None and patch["category"] != before["category"]:
        values["category_id"] = await _category_id(session, patch["category"])
    if patch.get("name") is not None and patch["name"] != before["name"]:
        values["name"] = patch["name"]
    if "description" in patch and patch["description"] != before["description"]:
        values["description"] = patch["description"]
    if not values:
        return TagRead.model_validate(before)
    if not await repo.update_tag(session, tag_id, {**values, "updated_by": principal.subject}):
        raise _duplicate_name()
    after = await get_tag(session, tag_id)
    await audit.record(
        session,
        actor=principal,
        action="tag.update",
        entity_type="tag",
        entity_id=tag_id,
        changes=audit.diff(_audit_view(before), _audit_view(after)),
    )
    return TagRead.model_validate(after)


async def delete_tag(session: AsyncSession, principal: Principal, tag_id: int) -> None:
    """Delete a tag and remove it from every customer (saved filters naming it match nothing)."""
    tag = await get_tag(session, tag_id)
    carried = await repo.delete_tag(session, tag_id)
    await audit.record(
        session,
        actor=principal,
        action="tag.delete",
        entity_type="tag",
        entity_id=tag_id,
        changes={**audit.diff(_audit_view(tag), {}), "customers": {"before": carried, "after": 0}},
    )


# ---- tagging customers -----------------------------------------------------------------------


async def _customer_tags(session: AsyncSession, principal: Principal, code: str) -> CustomerTags:
    row = await customer_service.get(session, principal, code)
    return CustomerTags(code=code, tags=row["tags"])


async def tag_customer(
    session: AsyncSession, principal: Principal, code: str, tag_id: int
) -> CustomerTags:
    """Put the tag on the customer (idempotent); the customer must be one the caller may change."""
    customer_id = await customer_service.require_writable(session, principal, code)
    tag = await get_tag(session, tag_id, lock=True)
    if await repo.assign(session, customer_id, tag_id, principal.subject):
        await audit.record(
            session,
            actor=principal,
            action="customer.tag",
            entity_type="customer",
            entity_id=code,
            changes={"tag": {"before": None, "after": _ref(tag)}},
        )
    return await _customer_tags(session, principal, code)


async def untag_customer(
    session: AsyncSession, principal: Principal, code: str, tag_id: int
) -> None:
    """Take the tag off the customer (idempotent)."""
    customer_id = await customer_service.require_writable(session, principal, code)
    tag = await get_tag(session, tag_id)
    if await repo.unassign(session, customer_id, tag_id):
        await audit.record(
            session,
            actor=principal,
            action="customer.untag",
            entity_type="customer",
            entity_id=code,
            changes={"tag": {"before": _ref(tag), "after": None}},
        )


def _ref(tag: dict[str, Any]) -> dict[str, Any]:
    return {"id": tag["id"], "name": tag["name"], "category": tag["category"]}


async def bulk(
    session: AsyncSession, principal: Principal, tag_id: int, data: BulkTagRequest
) -> BulkTagResult:
    """Tag or untag many customers in one set-based statement, audited as one operation.

    Only customers the caller may change are touched; the rest of the targets are skipped.
    """
    tag = await get_tag(session, tag_id, lock=True)
    unmatched: int | None = None
    if data.segment_id is not None:
        segment_filter = await segment_service.filter_of(session, principal, data.segment_id)
        targets = await customer_service.member_ids(
            session, principal, segment_filter, writable_only=True
        )
        source: dict[str, Any] = {"segment_id": data.segment_id}
    else:
        assert data.codes is not None
        codes = list(dict.fromkeys(data.codes))
        targets = customer_service.code_ids(principal, codes, writable_only=True)
        source = {"codes": len(codes)}
    if data.action == "add":
        matched, changed = await repo.bulk_add(session, tag_id, targets, principal.subject)
    else:
        matched, changed = await repo.bulk_remove(session, tag_id, targets)
    if data.codes is not None:
        unmatched = source["codes"] - matched
    if changed:
        # One row for the whole operation: what, from which targets, and how many changed.
        await audit.record(
            session,
            actor=principal,
            action=f"tag.bulk_{data.action}",
            entity_type="tag",
            entity_id=tag_id,
            changes={
                "tag": _ref(tag),
                **source,
                "matched": matched,
                "changed": changed,
            },
        )
    return BulkTagResult(
        tag_id=tag_id,
        action=data.action,
        matched=matched,
        changed=changed,
        unmatched_codes=unmatched,
    )
