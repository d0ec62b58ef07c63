"""Auditing: every feature calls `record` inside its own transaction, so both land or neither."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import repository
from app.auth.principal import Principal
from app.core.context import request_id_var


async def record(
    session: AsyncSession,
    *,
    actor: Principal | str,
    action: str,
    entity_type: str,
    entity_id: str | int | None = None,
    changes: dict[str, Any] | None = None,
) -> None:
    await repository.insert(
        session,
        actor=actor if isinstance(actor, str) else actor.subject,
        action=action,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id),
        changes=changes or {},
        request_id=request_id_var.get(),
    )


async def record_many(
    session: AsyncSession,
    *,
    actor: Principal | str,
    action: str,
    entity_type: str,
    entries: list[tuple[str, dict[str, Any]]],
) -> None:
    """Audit one action on many entities (entity id, changes) in a single statement."""
    if not entries:
        return
    await repository.insert_many(
        session,
        actor=actor if isinstance(actor, str) else actor.subject,
        action=action,
        entity_type=entity_type,
        entity_ids=[entity_id for entity_id, _ in entries],
        changes=[orjson.dumps(changes).decode() for _, changes in entries],
        request_id=request_id_var.get(),
    )


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Before/after of the fields that changed, as the audit row stores them."""
    return {
        key: {"before": before.get(key), "after": after.get(key)}
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    }


async def verify(session: AsyncSession) -> dict[str, Any]:
    return await repository.verify_chain(session)
