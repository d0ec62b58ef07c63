"""Define, change and retire custom fields (no migration needed)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.principal import Principal
from app.core.errors import Conflict, NotFound, ValidationFailed, field_error
from app.customers.repository import clear_definition_cache
from app.fields.schemas import CustomFieldCreate, CustomFieldRead, CustomFieldUpdate
from app.models.customer import CustomField


def _read(f: CustomField) -> CustomFieldRead:
    return CustomFieldRead(
        key=f.key,
        label=f.label,
        type=f.type,
        options=list(f.options),
        required=f.required,
        retired_at=f.retired_at,
        created_at=f.created_at,
    )


async def list_fields(session: AsyncSession, *, include_retired: bool) -> list[CustomFieldRead]:
    stmt = select(CustomField).order_by(CustomField.id)
    if not include_retired:
        stmt = stmt.where(CustomField.retired_at.is_(None))
    return [_read(f) for f in (await session.scalars(stmt)).all()]


async def _get(session: AsyncSession, key: str) -> CustomField:
    f = await session.scalar(select(CustomField).where(CustomField.key == key))
    if f is None:
        raise NotFound("No such custom field.", "自定义字段不存在。")
    return f


async def create(
    session: AsyncSession, principal: Principal, data: CustomFieldCreate
) -> CustomFieldRead:
    if await session.scalar(select(CustomField.id).where(CustomField.key == data.key)):
        raise Conflict(errors=[field_error("key", "a field with this key exists", "duplicate")])
    f = CustomField(**data.model_dump())
    session.add(f)
    await session.flush()
    clear_definition_cache()
    await session.refresh(f)
    await audit.record(
        session,
        actor=principal,
        action="field.create",
        entity_type="custom_field",
        entity_id=f.key,
        changes={"definition": {"before": None, "after": data.model_dump()}},
    )
    return _read(f)


async def update(
    session: AsyncSession, principal: Principal, key: str, data: CustomFieldUpdate
) -> CustomFieldRead:
    f = await _get(session, key)
    patch = data.model_dump(exclude_unset=True)
    changes = {}
    if patch.get("options") is not None:
        if f.type != "enum":
            raise ValidationFailed(errors=[field_error("options", "only enum fields have options")])
        removed = set(f.options) - set(patch["options"])
        if removed:
            # Removing an option would orphan stored values; retire the field instead.
            raise ValidationFailed(
                errors=[
                    field_error("options", f"options can be added, not removed: {sorted(removed)}")
                ]
            )
        changes["options"] = {"before": list(f.options), "after": patch["options"]}
        f.options = patch["options"]
    for attr in ("label", "required"):
        if patch.get(attr) is not None and getattr(f, attr) != patch[attr]:
            changes[attr] = {"before": getattr(f, attr), "after": patch[attr]}
            setattr(f, attr, patch[attr])
    if changes:
        await session.flush()
        clear_definition_cache()
        await audit.record(
            session,
            actor=principal,
            action="field.update",
            entity_type="custom_field",
            entity_id=key,
            changes=changes,
        )
    await session.refresh(f)
    return _read(f)


async def retire(session: AsyncSession, principal: Principal, key: str) -> None:
    f = await _get(session, key)
    if f.retired_at is None:
        f.retired_at = func.now()
        await session.flush()
        clear_definition_cache()
        await audit.record(
            session,
            actor=principal,
            action="field.retire",
            entity_type="custom_field",
            entity_id=key,
        )
