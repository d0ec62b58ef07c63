"""All interaction and timeline SQL. Visibility is the customer's: `readable` / `writable`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.core.db import Reader, Writer
from app.customers.repository import raw_fetch, readable, writable
from app.models.customer import Customer
from app.models.interaction import Interaction, Task

C = Customer.__table__.c
I = Interaction.__table__.c  # noqa: E741
T = Task.__table__.c

INTERACTION_COLUMNS: list[ColumnElement[Any]] = [
    I.id,
    C.code.label("customer_code"),
    I.customer_id,
    I.occurred_at,
    I.channel,
    I.kind,
    I.direction,
    I.summary,
    I.sentiment,
    I.commitment,
    I.staff_id,
    I.amount,
    I.products,
    I.resolved,
    I.version,
    I.created_at,
    I.updated_at,
    I.created_by,
]
READ_COLUMNS: list[ColumnElement[Any]] = [
    *INTERACTION_COLUMNS,
    T.id.label("task_id"),
    T.title.label("task_title"),
    T.assignee_id.label("task_assignee_id"),
    T.due_at.label("task_due_at"),
    T.status.label("task_status"),
]

_FROM = Interaction.__table__.join(Customer.__table__, C.id == I.customer_id).outerjoin(
    Task.__table__, T.interaction_id == I.id
)


async def lock_writable_customer(
    session: Writer, principal: Principal, code: str
) -> tuple[int, str] | None:
    """Lock the customer row the caller may write: writes to one customer run one at a time,
    so each recompute sees every interaction committed before it."""

    def build() -> Select[Any]:
        cond = writable(principal, user=bindparam("uid", None, type_=C.owner_id.type))
        return (
            select(C.id, C.code)
            .where(C.code == bindparam("code", None, type_=C.code.type), cond)
            .with_for_update()
        )

    rows = await raw_fetch(
        session,
        ("interactions.lock_writable", principal.own_customers_only),
        build,
        {"code": code, "uid": principal.user_id},
    )
    return None if not rows else (int(rows[0]["id"]), str(rows[0]["code"]))


# One round trip: the interaction, its next action's task, and the customer's next follow-up.
_INSERT_SQL = text(
    """
WITH i AS (
    INSERT INTO interactions
        (customer_id, occurred_at, channel, kind, direction, summary, sentiment, commitment,
         staff_id, amount, products, resolved, created_by, updated_by)
    VALUES (:customer_id, :occurred_at, :channel, :kind, :direction, :summary, :sentiment,
            :commitment, :staff_id, :amount, :products, :resolved, :actor, :actor)
    RETURNING *
),
t AS (
    INSERT INTO tasks
        (customer_id, interaction_id, title, note, assignee_id, due_at, created_by, updated_by)
    SELECT i.customer_id, i.id, CAST(:task_title AS text), CAST(:task_note AS text),
           CAST(:task_assignee_id AS bigint), CAST(:task_due_at AS timestamptz), :actor, :actor
      FROM i
     WHERE CAST(:with_task AS boolean)
    RETURNING id, title, assignee_id, due_at, status
),
f AS (
    UPDATE customers c
       SET next_follow_up_at = CASE WHEN c.next_follow_up_at > now()
                                    THEN least(c.next_follow_up_at, t.due_at)
                                    ELSE t.due_at END
      FROM t
     WHERE c.id = CAST(:customer_id AS bigint)
)
SELECT i.id, i.customer_id, i.occurred_at, i.channel, i.kind, i.direction, i.summary,
       i.sentiment, i.commitment, i.staff_id, i.amount, i.products, i.resolved, i.version,
       i.created_at, i.updated_at, i.created_by,
       t.id AS task_id, t.title AS task_title, t.assignee_id AS task_assignee_id,
       t.due_at AS task_due_at, t.status AS task_status
  FROM i
  LEFT JOIN t ON TRUE
"""
)


async def insert(session: Writer, values: dict[str, Any]) -> dict[str, Any]:
    return (await raw_fetch(session, "interactions.insert", _INSERT_SQL, values))[0]


def _visible(principal: Principal) -> Select[Any]:
    return select(*READ_COLUMNS).select_from(_FROM).where(readable(principal))


async def get(session: Reader, principal: Principal, interaction_id: int) -> dict[str, Any] | None:
    row = (
        (await session.execute(_visible(principal).where(I.id == interaction_id)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def lock_for_update(
    session: AsyncSession, principal: Principal, interaction_id: int
) -> dict[str, Any] | None:
    """The interaction and its customer, locked, when the caller may write the customer."""
    row = (
        (
            await session.execute(
                select(*INTERACTION_COLUMNS)
                .select_from(Interaction.__table__.join(Customer.__table__, C.id == I.customer_id))
                .where(I.id == interaction_id, writable(principal))
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def update_interaction(
    session: AsyncSession, interaction_id: int, values: dict[str, Any]
) -> None:
    await session.execute(
        update(Interaction)
        .where(I.id == interaction_id)
        .values(**values, version=I.version + 1, updated_at=func.now())
    )


def list_statement(
    principal: Principal,
    *,
    customer_id: int | None,
    channel: list[str],
    kind: list[str],
    direction: str | None,
    sentiment: list[str],
    staff_id: int | None,
    occurred_from: datetime | None,
    occurred_to: datetime | None,
    resolved: bool | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Select[Any]:
    stmt = _visible(principal)
    if customer_id is not None:
        stmt = stmt.where(I.customer_id == customer_id)
    if channel:
        stmt = stmt.where(I.channel.in_(channel))
    if kind:
        stmt = stmt.where(I.kind.in_(kind))
    if direction:
        stmt = stmt.where(I.direction == direction)
    if sentiment:
        stmt = stmt.where(I.sentiment.in_(sentiment))
    if staff_id is not None:
        stmt = stmt.where(I.staff_id == staff_id)
    if occurred_from is not None:
        stmt = stmt.where(I.occurred_at >= occurred_from)
    if occurred_to is not None:
        stmt = stmt.where(I.occurred_at < occurred_to)
    if resolved is not None:
        stmt = stmt.where(I.kind == "complaint", I.resolved.is_(resolved))
    if after is not None:
        at, last_id = after
        stmt = stmt.where(or_(I.occurred_at < at, and_(I.occurred_at == at, I.id < last_id)))
    return stmt.order_by(I.occurred_at.desc(), I.id.desc()).limit(limit)


# ---- timeline --------------------------------------------------------------------------------

# Newest first; the keyset is (at, type, id) across the four sources. `edit` rows are the
# customer's own audit entries (create, update, assign, claim, release, delete, restore).
_TIMELINE_SQL = """
SELECT e.at, e.type, e.id, e.data
  FROM (
    SELECT i.occurred_at AS at, 'interaction' AS type, i.id,
           jsonb_build_object(
               'id', i.id, 'channel', i.channel, 'kind', i.kind, 'direction', i.direction,
               'summary', i.summary, 'sentiment', i.sentiment, 'commitment', i.commitment,
               'staff_id', i.staff_id,
               'amount', CASE WHEN CAST(:amounts AS boolean) THEN i.amount::text END,
               'products', i.products, 'resolved', i.resolved) AS data
      FROM interactions i
     WHERE i.customer_id = CAST(:customer_id AS bigint)
    UNION ALL
    SELECT t.created_at, 'task', t.id,
           jsonb_build_object(
               'id', t.id, 'title', t.title, 'assignee_id', t.assignee_id, 'due_at', t.due_at,
               'status', t.status, 'completed_at', t.completed_at,
               'interaction_id', t.interaction_id)
      FROM tasks t
     WHERE t.customer_id = CAST(:customer_id AS bigint)
    UNION ALL
    SELECT tc.changed_at, 'tier_change', tc.id,
           jsonb_build_object(
               'dimension', tc.dimension, 'old_class', tc.old_class, 'new_class', tc.new_class,
               'reason', tc.reason, 'detail', tc.detail, 'cause', tc.cause,
               'rule_version', tc.rule_version)
      FROM tier_changes tc
     WHERE tc.customer_id = CAST(:customer_id AS bigint)
    UNION ALL
    SELECT a.at, 'edit', a.id,
           jsonb_build_object('action', a.action, 'actor', a.actor, 'changes', a.changes)
      FROM audit_log a
     WHERE a.entity_type = 'customer' AND a.entity_id = CAST(:code AS text)
  ) AS e
 WHERE TRUE /*after*/
 ORDER BY e.at DESC, e.type DESC, e.id DESC
 LIMIT :limit
"""
TIMELINE_FIRST = text(_TIMELINE_SQL)
TIMELINE_AFTER = text(
    _TIMELINE_SQL.replace(
        "/*after*/",
        "AND (e.at, e.type, e.id) < "
        "(CAST(:at AS timestamptz), CAST(:type AS text), CAST(:id AS bigint))",
    )
)


async def timeline(
    session: AsyncSession,
    *,
    customer_id: int,
    code: str,
    amounts: bool,
    after: tuple[datetime, str, int] | None,
    limit: int,
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {
        "customer_id": customer_id,
        "code": code,
        "amounts": amounts,
        "limit": limit,
    }
    stmt = TIMELINE_FIRST
    if after is not None:
        stmt = TIMELINE_AFTER
        params.update(at=after[0], type=after[1], id=after[2])
    rows = await session.execute(stmt, params)
    return [dict(r) for r in rows.mappings().all()]
