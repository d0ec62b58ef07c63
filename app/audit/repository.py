"""SQL for the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, text
from sqlalchemy import insert as sql_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditLog


async def insert(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str | None,
    changes: dict[str, Any],
    request_id: str | None,
) -> None:
    # id, prev_hash and hash are filled by the chain trigger; placeholders satisfy NOT NULL.
    await session.execute(
        sql_insert(AuditLog).values(
            id=0,
            actor=actor,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            changes=changes,
            request_id=request_id,
            prev_hash="",
            hash="",
        )
    )


_INSERT_MANY_SQL = text(
    """
    INSERT INTO audit_log (id, actor, action, entity_type, entity_id, changes, request_id,
                           prev_hash, hash)
    SELECT 0, :actor, :action, :entity_type, e.entity_id, e.changes, :request_id, '', ''
      FROM unnest(CAST(:entity_ids AS text[]), CAST(:changes AS jsonb[]))
           WITH ORDINALITY AS e (entity_id, changes, n)
     ORDER BY e.n
    """
)


async def insert_many(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_ids: list[str],
    changes: list[str],
    request_id: str | None,
) -> None:
    """One statement for many rows (set-based work); the chain trigger links them in order."""
    await session.execute(
        _INSERT_MANY_SQL,
        {
            "actor": actor,
            "action": action,
            "entity_type": entity_type,
            "entity_ids": entity_ids,
            "changes": changes,
            "request_id": request_id,
        },
    )


def list_statement(
    *,
    entity_type: str | None,
    entity_id: str | None,
    actor: str | None,
    action: str | None,
    at_from: datetime | None,
    at_to: datetime | None,
    before_id: int | None,
    limit: int,
) -> Select[AuditLog]:
    stmt = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if entity_type:
        stmt = stmt.where(AuditLog.entity_type == entity_type)
    if entity_id:
        stmt = stmt.where(AuditLog.entity_id == entity_id)
    if actor:
        stmt = stmt.where(AuditLog.actor == actor)
    if action:
        stmt = stmt.where(AuditLog.action == action)
    if at_from:
        stmt = stmt.where(AuditLog.at >= at_from)
    if at_to:
        stmt = stmt.where(AuditLog.at < at_to)
    if before_id is not None:
        stmt = stmt.where(AuditLog.id < before_id)
    return stmt


async def list_rows(session: AsyncSession, **filters: Any) -> list[AuditLog]:
    return list((await session.scalars(list_statement(**filters))).all())


_VERIFY_SQL = text(
    """
    WITH chain AS (
        SELECT id, hash, prev_hash,
               audit_log_digest(prev_hash, id, at, actor, action, entity_type, entity_id,
                                changes, request_id) AS recomputed,
               lag(hash) OVER (ORDER BY id) AS previous_hash
        FROM audit_log
    )
    SELECT
        (SELECT count(*) FROM chain) AS checked,
        (SELECT id FROM chain
          WHERE hash <> recomputed
             OR prev_hash <> coalesce(previous_hash, repeat('0', 64))
          ORDER BY id LIMIT 1) AS first_broken,
        (SELECT CASE WHEN hash <> recomputed THEN 'row content does not match its hash'
                     ELSE 'row does not link to the previous row' END
           FROM chain
          WHERE hash <> recomputed
             OR prev_hash <> coalesce(previous_hash, repeat('0', 64))
          ORDER BY id LIMIT 1) AS reason
    """
)


async def verify_chain(session: AsyncSession) -> dict[str, Any]:
    row = (await session.execute(_VERIFY_SQL)).one()
    return {
        "ok": row.first_broken is None,
        "rows_checked": int(row.checked),
        "first_broken_id": row.first_broken,
        "reason": row.reason,
    }
