"""SQL for the shared pool (公海): the set-based release and the first-wins claim."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.segments.repository import RULES_CTE

# Potential customers (no purchase) whose owner has not followed them up for `release_days`,
# counted from the last follow-up or from when the owner got them, whichever is later. FOR
# UPDATE re-reads a row changed meanwhile (a claim, a new interaction) and re-checks it, so the
# owner we clear and audit is the current one.
_RELEASE = (
    "WITH"  # noqa: S608 (constant SQL fragments, no input)
    + RULES_CTE
    + """,
candidates AS (
    SELECT c.id, c.code, c.owner_id
      FROM customers c
     CROSS JOIN r
     WHERE c.deleted_at IS NULL /*among*/
       AND c.owner_id IS NOT NULL
       AND c.lifecycle = 'potential'
       AND coalesce(greatest(c.last_follow_up_at, c.owner_assigned_at), c.created_at)
           < r.pool_since
       FOR UPDATE OF c
),
released AS (
    UPDATE customers c
       SET owner_id = NULL,
           version = c.version + 1,
           updated_at = now(),
           updated_by = CAST(:actor AS text)
      FROM candidates x
     WHERE c.id = x.id
    RETURNING c.id, x.code, x.owner_id AS old_owner
),
logged AS (
    INSERT INTO tier_changes
        (customer_id, dimension, old_class, new_class, reason, detail, cause, rule_version)
    SELECT released.id, 'owner', released.old_owner::text, NULL, 'pool_release',
           format('not followed up for more than %s days', r.pool_days),
           CAST(:cause AS text), r.version
      FROM released
     CROSS JOIN r
)
SELECT code, old_owner FROM released ORDER BY code
"""
)
RELEASE_SQL = text(_RELEASE)
# The same among given customers (the sweep's candidates), straight by primary key.
RELEASE_AMONG_SQL = text(_RELEASE.replace("/*among*/", "AND c.id = ANY(CAST(:among AS bigint[]))"))


async def release_quiet_customers(
    session: AsyncSession, *, actor: str, cause: str, among: list[int] | None = None
) -> list[tuple[str, int]]:
    if among is not None and not among:
        return []
    if among is None:
        rows = await session.execute(RELEASE_SQL, {"actor": actor, "cause": cause})
    else:
        rows = await session.execute(
            RELEASE_AMONG_SQL, {"actor": actor, "cause": cause, "among": among}
        )
    return [(str(code), int(owner)) for code, owner in rows.all()]


# The WHERE owner_id IS NULL is re-checked on the locked row: of concurrent claims exactly one
# updates it, the others find the owner set and update nothing.
CLAIM_SQL = text(
    """
WITH claimed AS (
    UPDATE customers
       SET owner_id = CAST(:user_id AS bigint),
           version = version + 1,
           updated_at = now(),
           updated_by = CAST(:actor AS text)
     WHERE code = CAST(:code AS text) AND owner_id IS NULL AND deleted_at IS NULL
    RETURNING id
),
logged AS (
    INSERT INTO tier_changes
        (customer_id, dimension, old_class, new_class, reason, detail, cause, rule_version)
    SELECT id, 'owner', NULL, CAST(:user_id AS bigint)::text, 'claim',
           'claimed from the shared pool', 'claim', NULL
      FROM claimed
)
SELECT id FROM claimed
"""
)


async def claim(session: AsyncSession, *, code: str, user_id: int, actor: str) -> int | None:
    row: Any = (
        await session.execute(CLAIM_SQL, {"code": code, "user_id": user_id, "actor": actor})
    ).first()
    return None if row is None else int(row[0])
