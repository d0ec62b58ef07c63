"""All task and reminder SQL. Visibility is the customer's (`readable` / `writable`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.permissions import Role
from app.auth.principal import Principal
from app.core.db import Writer
from app.customers.repository import readable, writable
from app.models.customer import Customer
from app.models.interaction import Task
from app.models.user import User

C = Customer.__table__.c
T = Task.__table__.c
U = User.__table__.c

TASK_COLUMNS: list[ColumnElement[Any]] = [
    T.id,
    C.code.label("customer_code"),
    T.customer_id,
    T.interaction_id,
    T.title,
    T.note,
    T.assignee_id,
    T.due_at,
    T.status,
    T.completed_at,
    T.version,
    T.created_at,
    T.updated_at,
    T.created_by,
]
_FROM = Task.__table__.join(Customer.__table__, C.id == T.customer_id)


async def staff_principal(session: Writer, user_id: int) -> Principal | None:
    """An active staff user as a principal (for "can this person see that customer")."""
    role = await session.scalar(select(U.role).where(U.id == user_id, U.is_active))
    if role is None:
        return None
    return Principal(kind="user", id=user_id, role=Role(role), scopes=frozenset())


async def customer_visible_to(session: Writer, customer_id: int, who: Principal) -> bool:
    return bool(await session.scalar(select(exists().where(C.id == customer_id, readable(who)))))


async def insert_task(session: AsyncSession, values: dict[str, Any]) -> int:
    task_id = await session.scalar(insert(Task).values(**values).returning(T.id))
    assert task_id is not None
    return int(task_id)


async def get(session: AsyncSession, principal: Principal, task_id: int) -> dict[str, Any] | None:
    row = (
        (
            await session.execute(
                select(*TASK_COLUMNS).select_from(_FROM).where(T.id == task_id, readable(principal))
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def lock_for_update(
    session: AsyncSession, principal: Principal, task_id: int
) -> dict[str, Any] | None:
    """The task, locked, when its customer is visible; `can_write` says if the caller may also
    change the customer (an assignee who may not can still complete or cancel the task)."""
    row = (
        (
            await session.execute(
                select(*TASK_COLUMNS, writable(principal).label("can_write"))
                .select_from(_FROM)
                .where(T.id == task_id, readable(principal))
                .with_for_update(of=Task)
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def update_task(session: AsyncSession, task_id: int, values: dict[str, Any]) -> None:
    await session.execute(
        update(Task)
        .where(T.id == task_id)
        .values(**values, version=T.version + 1, updated_at=func.now())
    )


def list_statement(
    principal: Principal,
    *,
    assignee_id: int | None,
    status: list[str],
    customer_id: int | None,
    due_from: datetime | None,
    due_to: datetime | None,
    overdue_at: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Select[Any]:
    stmt = select(*TASK_COLUMNS).select_from(_FROM).where(readable(principal))
    if assignee_id is not None:
        stmt = stmt.where(T.assignee_id == assignee_id)
    if status:
        stmt = stmt.where(T.status.in_(status))
    if customer_id is not None:
        stmt = stmt.where(T.customer_id == customer_id)
    if due_from is not None:
        stmt = stmt.where(T.due_at >= due_from)
    if due_to is not None:
        stmt = stmt.where(T.due_at < due_to)
    if overdue_at is not None:
        stmt = stmt.where(T.status == "open", T.due_at < overdue_at)
    if after is not None:
        due, last_id = after
        stmt = stmt.where(or_(T.due_at > due, and_(T.due_at == due, T.id > last_id)))
    return stmt.order_by(T.due_at.asc(), T.id.asc()).limit(limit)


# ---- reminders -------------------------------------------------------------------------------


def _owner_condition(principal: Principal, mine: bool) -> ColumnElement[bool]:
    if not mine:
        return C.owner_id.is_not(None)  # the pool is nobody's reminder
    if principal.user_id is None:
        return false()
    return C.owner_id == principal.user_id


async def overdue_tasks(
    session: AsyncSession, principal: Principal, *, mine: bool, now: datetime, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    stmt = (
        select(*TASK_COLUMNS, func.count().over().label("_total"))
        .select_from(_FROM)
        .where(readable(principal), T.status == "open", T.due_at < now)
    )
    if mine:
        stmt = stmt.where(
            T.assignee_id == principal.user_id if principal.user_id is not None else false()
        )
    rows = (
        (await session.execute(stmt.order_by(T.due_at.asc(), T.id.asc()).limit(limit)))
        .mappings()
        .all()
    )
    return (int(rows[0]["_total"]) if rows else 0), [dict(r) for r in rows]


LAST_TOUCH = func.coalesce(C.last_follow_up_at, C.created_at)


async def customers_due(
    session: AsyncSession,
    principal: Principal,
    *,
    mine: bool,
    cutoffs: dict[str | None, datetime],
    limit: int,
) -> tuple[int, list[dict[str, Any]]]:
    """Customers not followed up since their cutoff: `None` applies to every customer, a tier
    name to customers of that value tier."""
    conds = [
        cutoff > LAST_TOUCH if tier is None else and_(C.value_tier == tier, cutoff > LAST_TOUCH)
        for tier, cutoff in cutoffs.items()
    ]
    if not conds:
        return 0, []
    stmt = (
        select(
            C.code,
            C.name,
            C.owner_id,
            C.value_tier,
            C.lifecycle,
            C.last_follow_up_at,
            C.next_follow_up_at,
            LAST_TOUCH.label("last_touch"),
            func.count().over().label("_total"),
        )
        .where(readable(principal), _owner_condition(principal, mine), or_(*conds))
        .order_by(LAST_TOUCH.asc(), C.id.asc())
        .limit(limit)
    )
    rows = (await session.execute(stmt)).mappings().all()
    return (int(rows[0]["_total"]) if rows else 0), [dict(r) for r in rows]
