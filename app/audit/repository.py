"""SQL for the audit log: lock-free inserts, the sealer that chains committed rows, the check."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import Select, Table, Text, bindparam, select, text
from sqlalchemy import cast as sql_cast
from sqlalchemy import insert as sql_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core import rawsql
from app.core.db import Writer
from app.models.audit import AuditLog


async def insert(
    session: Writer,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str | None,
    changes: dict[str, Any],
    request_id: str | None,
) -> None:
    # The insert trigger assigns the id; the sealer fills the chain fields after COMMIT. Every
    # write request runs this: compiled once, run on the session's asyncpg connection.
    await rawsql.raw_fetch(
        session,
        "audit.insert",
        _insert_one,
        {
            "actor": actor,
            "action": action,
            "entity_type": entity_type,
            "entity_id": entity_id,
            # Serialized here by orjson (as `insert_many`'s are), not by the engine's stdlib
            # encoder: a sixtieth of an interaction's CPU.
            "changes": orjson.dumps(changes, option=orjson.OPT_NON_STR_KEYS).decode(),
            "request_id": request_id,
        },
    )


def _insert_one() -> Any:
    table = cast(Table, AuditLog.__table__)
    values: dict[str, Any] = {
        name: bindparam(name, type_=table.c[name].type)
        for name in ("actor", "action", "entity_type", "entity_id", "request_id")
    }
    values["changes"] = sql_cast(bindparam("changes", type_=Text), table.c.changes.type)
    return sql_insert(table).values(values)


_INSERT_MANY_SQL = text(
    """
    INSERT INTO audit_log (actor, action, entity_type, entity_id, changes, request_id)
    SELECT :actor, :action, :entity_type, e.entity_id, e.changes, :request_id
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
    """One statement for many rows (set-based work); ids follow the given order."""
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
    # The listing is the sealed log: the caller seals first, so only rows committed in between
    # wait for the next request (they have no hash to show yet).
    stmt = (
        select(AuditLog).where(AuditLog.seq.is_not(None)).order_by(AuditLog.id.desc()).limit(limit)
    )
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


# At most this many rows per sealing transaction, so a backlog never holds the lock for long.
SEAL_BATCH = 10_000


async def seal_batch(conn: AsyncConnection, *, wait: bool) -> int | None:
    """Seal up to SEAL_BATCH committed rows in the caller's transaction (which must not have
    written). None when `wait` is false and another sealer holds the lock."""
    sealed = await conn.scalar(
        text("SELECT audit_log_seal(:wait, :limit)"), {"wait": wait, "limit": SEAL_BATCH}
    )
    return None if sealed is None else int(sealed)


_VERIFY_SQL = text(
    """
    WITH chain AS (
        SELECT id, seq, hash, prev_hash,
               audit_log_digest(prev_hash, id, at, actor, action, entity_type, entity_id,
                                changes, request_id) AS recomputed,
               lag(hash) OVER (ORDER BY seq) AS previous_hash
          FROM audit_log
         WHERE seq IS NOT NULL
    ),
    broken AS (
        SELECT id,
               CASE WHEN hash IS DISTINCT FROM recomputed
                    THEN 'row content does not match its hash'
                    ELSE 'row does not link to the previous row' END AS reason
          FROM chain
         WHERE hash IS DISTINCT FROM recomputed
            OR prev_hash IS DISTINCT FROM coalesce(previous_hash, repeat('0', 64))
         ORDER BY seq
         LIMIT 1
    )
    SELECT (SELECT count(*) FROM chain) AS checked,
           (SELECT count(*) FROM audit_log WHERE seq IS NULL) AS unsealed,
           (SELECT id FROM broken) AS first_broken,
           (SELECT reason FROM broken) AS reason
    """
)


async def verify_chain(session: AsyncSession) -> dict[str, Any]:
    """Every sealed row against its hash and its predecessor in chain (seq) order."""
    row = (await session.execute(_VERIFY_SQL)).one()
    return {
        "rows_checked": int(row.checked),
        "rows_unsealed": int(row.unsealed),
        "first_broken_id": row.first_broken,
        "reason": row.reason,
    }
