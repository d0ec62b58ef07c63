"""Auditing: every feature calls `record` inside its own transaction, so both land or neither.

Writing a row takes no lock shared with other writers; the hash chain is built afterwards by
`seal_pending` (a background task in each process, and every audit read before it answers)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.audit import repository
from app.auth.principal import Principal
from app.core.context import request_id_var
from app.core.db import Writer
from app.models.audit import AuditLog


async def record(
    session: Writer,
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


async def seal_pending(engine: AsyncEngine, *, wait: bool = True) -> int:
    """Chain every committed, unsealed row; returns how many were sealed.

    Each batch is its own short READ COMMITTED transaction on its own connection, never the
    caller's: the sealer must see other transactions' commits, and no uncommitted row. With
    `wait` false it gives up at once when another sealer is at work (that one seals the rows).
    """
    total = 0
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="READ COMMITTED")
        while True:
            async with conn.begin():
                sealed = await repository.seal_batch(conn, wait=wait)
            if sealed is None:
                return total
            total += sealed
            if sealed < repository.SEAL_BATCH:
                return total


async def list_entries(
    session: AsyncSession, engine: AsyncEngine, **filters: Any
) -> list[AuditLog]:
    """Sealed entries, newest first; seals first so that what committed before is listed."""
    await seal_pending(engine)
    return await repository.list_rows(session, **filters)


async def verify(session: AsyncSession, engine: AsyncEngine) -> dict[str, Any]:
    """Seal, then check every sealed row against its hash and its predecessor in chain order.

    Rows committed after the seal are not checked yet; `reason` says so when the chain is ok."""
    await seal_pending(engine)
    result = await repository.verify_chain(session)
    reason = result["reason"]
    unsealed = result["rows_unsealed"]
    if reason is None and unsealed:
        reason = (
            "1 row committed after sealing is not checked yet"
            if unsealed == 1
            else f"{unsealed} rows committed after sealing are not checked yet"
        )
    return {
        "ok": result["first_broken_id"] is None,
        "rows_checked": result["rows_checked"],
        "first_broken_id": result["first_broken_id"],
        "reason": reason,
    }
