"""All report SQL: one set-based aggregate per figure, every one scoped to the customers the
caller may see with the customer feature's `readable_for` (and nothing else).

"Acquired" is when a customer first reached us: the recorded first contact, else the creation
of the record. A customer's class at an instant is the old class of its first change after that
instant, or its current class when it has not changed since.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    delete,
    func,
    literal,
    null,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.customers.repository import readable_for
from app.models.customer import Customer
from app.models.interaction import Interaction, Task
from app.models.report import ChannelCost
from app.models.segment import TierChange

CUSTOMERS = Customer.__table__
C = CUSTOMERS.c
COSTS = ChannelCost.__table__
COST = COSTS.c

ACQUIRED = func.coalesce(C.first_contact_at, C.created_at)
REGION = func.coalesce(C.province, C.city)


def _visible(principal: Principal) -> ColumnElement[bool]:
    return readable_for(principal, C)


def _in(col: Any, start: datetime | None, end: datetime | None) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if start is not None:
        conds.append(col >= start)
    if end is not None:
        conds.append(col < end)
    return conds


# ---- overview --------------------------------------------------------------------------------

OVERVIEW_DIMENSIONS: dict[str, Any] = {
    "source": C.source,
    "cooperation_status": C.cooperation_status,
    "value_tier": C.value_tier,
    "lifecycle": C.lifecycle,
    "industry": C.industry,
    "region": REGION,
    "owner": C.owner_id,
}


async def overview_counts(
    session: AsyncSession, principal: Principal, start: datetime | None, end: datetime | None
) -> dict[str, list[tuple[Any, int]]]:
    """Customers per value in every dimension, in one pass (GROUPING SETS)."""
    exprs = list(OVERVIEW_DIMENSIONS.values())
    stmt = (
        select(
            *(expr.label(name) for name, expr in OVERVIEW_DIMENSIONS.items()),
            *(func.grouping(expr).label(f"g_{name}") for name, expr in OVERVIEW_DIMENSIONS.items()),
            func.count().label("n"),
        )
        .where(_visible(principal), *_in(ACQUIRED, start, end))
        .group_by(func.grouping_sets(*(tuple_(expr) for expr in exprs)))
    )
    out: dict[str, list[tuple[Any, int]]] = {name: [] for name in OVERVIEW_DIMENSIONS}
    for row in (await session.execute(stmt)).mappings():
        for name in OVERVIEW_DIMENSIONS:
            if row[f"g_{name}"] == 0:
                out[name].append((row[name], int(row["n"])))
                break
    return out


# ---- weekly ----------------------------------------------------------------------------------


async def new_customers_by_source(
    session: AsyncSession, principal: Principal, start: datetime, end: datetime
) -> list[tuple[str | None, int]]:
    stmt = (
        select(C.source, func.count())
        .where(_visible(principal), *_in(ACQUIRED, start, end))
        .group_by(C.source)
    )
    return [(r[0], int(r[1])) for r in (await session.execute(stmt)).all()]


async def response_counts(
    session: AsyncSession,
    principal: Principal,
    start: datetime,
    end: datetime,
    *,
    window: timedelta,
    now: datetime,
) -> list[dict[str, Any]]:
    """Per channel: inbound interactions in [start, end), those answered by an outbound one on
    the same customer within `window`, and the unanswered ones whose window is still open."""
    inbound = Interaction.__table__.alias("i")
    outbound = Interaction.__table__.alias("o")
    first_reply = (
        select(func.min(outbound.c.occurred_at))
        .where(
            outbound.c.customer_id == inbound.c.customer_id,
            outbound.c.direction == "outbound",
            outbound.c.occurred_at >= inbound.c.occurred_at,
        )
        .correlate(inbound)
        .scalar_subquery()
    )
    deadline = inbound.c.occurred_at + window
    answered = first_reply <= deadline
    stmt = (
        select(
            inbound.c.channel,
            func.count().label("inbound"),
            func.count().filter(answered).label("answered"),
            func.count()
            .filter(and_(or_(first_reply.is_(None), ~answered), deadline > now))
            .label("pending"),
        )
        .select_from(inbound.join(CUSTOMERS, C.id == inbound.c.customer_id))
        .where(
            _visible(principal),
            inbound.c.direction == "inbound",
            *_in(inbound.c.occurred_at, start, end),
        )
        .group_by(inbound.c.channel)
    )
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def task_counts(
    session: AsyncSession, principal: Principal, start: datetime, end: datetime, now: datetime
) -> list[dict[str, Any]]:
    """Per assignee: tasks due in [start, end) on customers the caller may see, by outcome."""
    t = Task.__table__.c
    done = t.status == "done"
    stmt = (
        select(
            t.assignee_id,
            func.count().label("due"),
            func.count().filter(done, t.completed_at <= t.due_at).label("on_time"),
            func.count().filter(done, t.completed_at > t.due_at).label("late"),
            func.count().filter(t.status == "open").label("open"),
            func.count().filter(t.status == "open", t.due_at < now).label("overdue"),
            func.count().filter(t.status == "cancelled").label("cancelled"),
        )
        .select_from(Task.__table__.join(CUSTOMERS, C.id == t.customer_id))
        .where(_visible(principal), *_in(t.due_at, start, end))
        .group_by(t.assignee_id)
    )
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


def class_at(dimension: str, current: Any, at: datetime) -> Any:
    """The customer's class in `dimension` at instant `at` (see the module docstring)."""
    tc = TierChange.__table__.c
    first_after = (
        select(tc.old_class)
        .where(tc.customer_id == C.id, tc.dimension == dimension, tc.changed_at > at)
        .order_by(tc.changed_at.asc(), tc.id.asc())
        .limit(1)
        .correlate(CUSTOMERS)
    )
    changed_since = (
        select(tc.id)
        .where(tc.customer_id == C.id, tc.dimension == dimension, tc.changed_at > at)
        .correlate(CUSTOMERS)
        .exists()
    )
    return case((changed_since, first_after.scalar_subquery()), else_=current)


async def cadence_counts(
    session: AsyncSession,
    principal: Principal,
    *,
    as_of: datetime,
    cadence_days: dict[str, int],
    historical: bool,
) -> list[dict[str, Any]]:
    """Customers whose value tier (at `as_of`) has a follow-up cadence, and those followed up
    within it, by tier and by owner (GROUPING SETS). A customer's last follow-up at `as_of` is
    its newest interaction before then, or the follow-up date recorded on it when that is not
    later; a customer never followed up counts from its creation."""
    if not cadence_days:
        return []
    i = Interaction.__table__.c
    last_interaction = (
        select(func.max(i.occurred_at))
        .where(i.customer_id == C.id, i.occurred_at < as_of)
        .correlate(CUSTOMERS)
        .scalar_subquery()
    )
    recorded = case((C.last_follow_up_at <= as_of, C.last_follow_up_at), else_=null())
    if historical:
        touch = func.coalesce(func.greatest(last_interaction, recorded), C.created_at)
        tier = class_at("value_tier", C.value_tier, as_of)
    else:
        # For the week in progress the stored values are the ones at `as_of` (now).
        touch = func.coalesce(C.last_follow_up_at, C.created_at)
        tier = C.value_tier
    cadence = case(
        *((tier == name, literal(days)) for name, days in cadence_days.items()), else_=null()
    )
    inner = (
        select(
            tier.label("tier"),
            C.owner_id.label("owner_id"),
            (touch >= as_of - func.make_interval(0, 0, 0, cadence)).label("compliant"),
            cadence.label("cadence"),
        )
        .where(_visible(principal), C.created_at <= as_of)
        .subquery()
    )
    stmt = (
        select(
            inner.c.tier,
            inner.c.owner_id,
            func.grouping(inner.c.tier).label("g_tier"),
            func.count().label("customers"),
            func.count().filter(inner.c.compliant).label("compliant"),
        )
        .where(inner.c.cadence.is_not(None))
        .group_by(func.grouping_sets(tuple_(inner.c.tier), tuple_(inner.c.owner_id)))
    )
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


# ---- monthly ---------------------------------------------------------------------------------


async def conversions(
    session: AsyncSession, principal: Principal, dimension: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Class changes in `dimension` during [start, end), by (from, to): how many, by how many
    customers, and how many customers were in the `from` class at some time in the period."""
    tc = TierChange.__table__.c
    current = C.value_tier if dimension == "value_tier" else C.lifecycle
    moves = (
        select(tc.customer_id, tc.old_class, tc.new_class)
        .select_from(TierChange.__table__.join(CUSTOMERS, C.id == tc.customer_id))
        .where(_visible(principal), tc.dimension == dimension, *_in(tc.changed_at, start, end))
        .cte("moves")
    )
    at_start = select(C.id.label("customer_id"), class_at(dimension, current, start).label("cls"))
    at_start = at_start.where(_visible(principal), C.created_at < start)
    members = at_start.union(
        select(moves.c.customer_id, moves.c.new_class),
        select(moves.c.customer_id, moves.c.old_class),
    ).subquery("members")
    base = (
        select(members.c.cls, func.count(members.c.customer_id.distinct()).label("n"))
        .where(members.c.cls.is_not(None))
        .group_by(members.c.cls)
        .subquery("base")
    )
    stmt = (
        select(
            moves.c.old_class,
            moves.c.new_class,
            func.count().label("transitions"),
            func.count(moves.c.customer_id.distinct()).label("customers"),
            func.coalesce(base.c.n, 0).label("base"),
        )
        .select_from(moves.outerjoin(base, base.c.cls == moves.c.old_class))
        .group_by(moves.c.old_class, moves.c.new_class, base.c.n)
        .order_by(moves.c.old_class, moves.c.new_class)
    )
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def deals_by_source(
    session: AsyncSession, principal: Principal, start: datetime, end: datetime
) -> list[tuple[str | None, int, Decimal]]:
    i = Interaction.__table__.c
    stmt = (
        select(C.source, func.count(), func.coalesce(func.sum(i.amount), 0))
        .select_from(Interaction.__table__.join(CUSTOMERS, C.id == i.customer_id))
        .where(_visible(principal), i.kind == "purchase", *_in(i.occurred_at, start, end))
        .group_by(C.source)
    )
    return [(r[0], int(r[1]), Decimal(r[2])) for r in (await session.execute(stmt)).all()]


async def theme_texts(
    session: AsyncSession,
    principal: Principal,
    kind: str,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[tuple[int, str]]:
    """(customer id, summary) of the period's interactions of `kind`, newest first."""
    i = Interaction.__table__.c
    stmt = (
        select(i.customer_id, i.summary)
        .select_from(Interaction.__table__.join(CUSTOMERS, C.id == i.customer_id))
        .where(
            _visible(principal),
            i.kind == kind,
            i.summary.is_not(None),
            *_in(i.occurred_at, start, end),
        )
        .order_by(i.occurred_at.desc(), i.id.desc())
        .limit(limit)
    )
    return [(int(r[0]), str(r[1])) for r in (await session.execute(stmt)).all()]


# Key fields of a complete record (SPEC §9), each as "is filled" over the customer row.
KEY_FIELDS: dict[str, ColumnElement[bool]] = {
    "name": func.coalesce(func.btrim(C.name), "") != "",
    "contact": or_(C.phone.is_not(None), C.email.is_not(None)),
    "industry": C.industry.is_not(None),
    "source": C.source.is_not(None),
    "region": or_(C.province.is_not(None), C.city.is_not(None)),
    "owner": C.owner_id.is_not(None),
}


async def completeness_counts(session: AsyncSession, principal: Principal) -> dict[str, int]:
    filled = [func.count().filter(cond).label(key) for key, cond in KEY_FIELDS.items()]
    every = and_(*KEY_FIELDS.values())
    stmt = select(
        func.count().label("customers"),
        func.count().filter(every).label("complete"),
        *filled,
    ).where(_visible(principal))
    row = (await session.execute(stmt)).mappings().one()
    return {k: int(v) for k, v in row.items()}


# ---- channel costs ---------------------------------------------------------------------------


def _costs_statement(month: date | None) -> Select[Any]:
    stmt = select(COSTS).order_by(COSTS.c.month.desc(), COSTS.c.channel)
    if month is not None:
        stmt = stmt.where(COSTS.c.month == month)
    return stmt


async def channel_costs(session: AsyncSession, month: date | None) -> list[dict[str, Any]]:
    return [dict(r) for r in (await session.execute(_costs_statement(month))).mappings()]


async def replace_channel_costs(
    session: AsyncSession, month: date, rows: list[dict[str, Any]], actor: str
) -> None:
    await session.execute(delete(ChannelCost).where(COST.month == month))
    if rows:
        await session.execute(
            insert(ChannelCost).values(
                [{**row, "month": month, "updated_by": actor} for row in rows]
            )
        )
