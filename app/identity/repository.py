"""SQL for identity matching, duplicate candidates and merges."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.auth.principal import Principal
from app.core.db import Writer
from app.customers.repository import raw_fetch, readable_for
from app.models.customer import Customer
from app.models.identity import DuplicateCandidate

# Tables whose rows belong to a customer and move with a merge: (table, primary key column).
# Tables not present in this database are skipped, so features can land in any order.
MERGE_TABLES: list[tuple[str, str]] = [
    ("interactions", "id"),
    ("tasks", "id"),
    ("consents", "id"),
    ("tier_changes", "id"),
]
# Link tables keyed by (customer_id, other): copied to the survivor, conflicts ignored.
MERGE_LINK_TABLES: list[tuple[str, str]] = [("customer_tags", "tag_id")]


async def existing_tables(session: AsyncSession, names: list[str]) -> set[str]:
    rows = await session.execute(
        text(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND column_name = 'customer_id' "
            "AND table_name = ANY(:names)"
        ),
        {"names": names},
    )
    return {r[0] for r in rows}


async def find_exact(
    session: Writer,
    *,
    phones: list[str],
    emails: list[str],
    wechat_ids: list[str],
    external_ids: dict[str, str],
) -> int | None:
    """The live customer sharing a phone, email, WeChat id or external id; strongest first."""
    checks: list[tuple[str, dict[str, Any]]] = []
    for p in phones:
        checks.append(("phone = :v", {"v": p}))
        checks.append(
            ("contacts @> CAST(:v AS jsonb)", {"v": orjson.dumps([{"phones": [p]}]).decode()})
        )
    for e in emails:
        checks.append(("email = :v", {"v": e}))
        checks.append(
            ("contacts @> CAST(:v AS jsonb)", {"v": orjson.dumps([{"email": e}]).decode()})
        )
    for w in wechat_ids:
        checks.append(
            ("contacts @> CAST(:v AS jsonb)", {"v": orjson.dumps([{"wechat_id": w}]).decode()})
        )
    for k, v in external_ids.items():
        checks.append(("external_ids @> CAST(:v AS jsonb)", {"v": orjson.dumps({k: v}).decode()}))
    for cond, params in checks:
        # cond is one of the fixed predicates above; values are bound parameters. Every webhook
        # delivery runs this: compiled once per predicate, run on the asyncpg connection.
        sql = f"SELECT id FROM customers WHERE deleted_at IS NULL AND {cond} "  # noqa: S608
        rows = await raw_fetch(
            session,
            ("identity.exact", cond),
            lambda sql=sql: text(sql + "ORDER BY updated_at DESC LIMIT 1"),
            params,
        )
        if rows:
            return int(rows[0]["id"])
    return None


_CANDIDATES_FOR = text(
    """
    WITH me AS (
        SELECT id, kind, name_key, phone, email, city FROM customers WHERE id = :id
    ), found AS (
        SELECT o.id AS other,
               CASE
                 WHEN me.phone IS NOT NULL AND o.phone = me.phone THEN 1.0
                 WHEN me.email IS NOT NULL AND o.email = me.email THEN 1.0
                 WHEN me.kind = 'individual' AND o.city = me.city THEN 0.9
                 WHEN me.kind = 'individual'
                      AND left(o.phone, 10) = left(me.phone, 10) THEN 0.85
                 WHEN me.kind = 'enterprise' THEN 0.95
                 ELSE 0.7
               END AS score,
               CASE
                 WHEN me.phone IS NOT NULL AND o.phone = me.phone THEN 'same phone'
                 WHEN me.email IS NOT NULL AND o.email = me.email THEN 'same email'
                 WHEN me.kind = 'individual' AND o.city = me.city THEN 'same name and city'
                 WHEN me.kind = 'individual'
                      AND left(o.phone, 10) = left(me.phone, 10) THEN 'same name and phone prefix'
                 WHEN me.kind = 'enterprise'
                   THEN 'same company name apart from legal suffix, punctuation or width'
                 ELSE 'same name'
               END AS reason
        FROM me JOIN customers o ON o.id <> me.id AND o.deleted_at IS NULL
        WHERE (me.name_key <> '' AND o.name_key = me.name_key
               AND (me.kind = 'enterprise' OR o.city = me.city
                    OR left(o.phone, 10) = left(me.phone, 10)))
           OR (me.phone IS NOT NULL AND o.phone = me.phone)
           OR (me.email IS NOT NULL AND o.email = me.email)
    )
    INSERT INTO duplicate_candidates (customer_a, customer_b, score, reason)
    SELECT least(:id, other), greatest(:id, other), score, reason FROM found
    ON CONFLICT (customer_a, customer_b) DO UPDATE
        SET score = greatest(duplicate_candidates.score, EXCLUDED.score)
        WHERE duplicate_candidates.status = 'pending'
    """
)


async def record_candidates_for(session: Writer, customer_id: int) -> None:
    """Exact-key checks on write (indexed, cheap); fuzzy similarity is the scan's job."""
    await raw_fetch(session, "identity.candidates_for", _CANDIDATES_FOR, {"id": customer_id})


_SCAN = text(
    """
    INSERT INTO duplicate_candidates (customer_a, customer_b, score, reason)
    SELECT a.id, b.id, round(similarity(a.name_key, b.name_key)::numeric * 0.9, 3),
           'similar name (' || round(similarity(a.name_key, b.name_key)::numeric * 100)
               || '% alike)'
               || CASE WHEN a.city = b.city THEN ', same city' ELSE '' END
    FROM customers a
    JOIN customers b
      ON a.id < b.id AND b.deleted_at IS NULL AND b.name_key % a.name_key
     AND b.kind = a.kind
     AND (a.kind = 'enterprise' OR a.city = b.city)
    WHERE a.deleted_at IS NULL AND a.name_key <> '' AND a.updated_at >= :since
    ON CONFLICT (customer_a, customer_b) DO NOTHING
    """
)


async def scan(session: AsyncSession, since: Any, threshold: float) -> int:
    await session.execute(
        text("SELECT set_config('pg_trgm.similarity_threshold', :t, true)"), {"t": str(threshold)}
    )
    result = await session.execute(_SCAN, {"since": since})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def list_candidates(
    session: AsyncSession, principal: Principal, *, after: list[Any] | None, limit: int
) -> list[dict[str, Any]]:
    a = aliased(Customer)
    b = aliased(Customer)
    D = DuplicateCandidate
    stmt = (
        select(
            D.id,
            D.score,
            D.reason,
            D.created_at,
            a.code.label("a_code"),
            a.name.label("a_name"),
            b.code.label("b_code"),
            b.name.label("b_name"),
        )
        .join(a, a.id == D.customer_a)
        .join(b, b.id == D.customer_b)
        # Both sides must be visible to the caller.
        .where(D.status == "pending", readable_for(principal, a), readable_for(principal, b))
        .order_by(D.score.desc(), D.id.asc())
        .limit(limit)
    )
    if after is not None:
        score, cid = Decimal(str(after[0])), int(after[1])
        stmt = stmt.where(or_(D.score < score, and_(D.score == score, D.id > cid)))
    return [dict(r) for r in (await session.execute(stmt)).mappings().all()]


async def count_pending(session: AsyncSession, principal: Principal) -> int:
    a = aliased(Customer)
    b = aliased(Customer)
    D = DuplicateCandidate
    count = await session.scalar(
        select(func.count())
        .select_from(D)
        .join(a, a.id == D.customer_a)
        .join(b, b.id == D.customer_b)
        .where(D.status == "pending", readable_for(principal, a), readable_for(principal, b))
    )
    return int(count or 0)
