"""All tag SQL: categories, tags, customer_tags and the set-based bulk statements."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    String,
    delete,
    exists,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import CITEXT, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.tag import CustomerTag, Tag, TagCategory

T = Tag.__table__.c
TC = TagCategory.__table__.c
CT = CustomerTag.__table__.c

# ---- categories ------------------------------------------------------------------------------


async def categories(session: AsyncSession) -> list[TagCategory]:
    return list((await session.scalars(select(TagCategory).order_by(TagCategory.id))).all())


async def category_by_code(session: AsyncSession, code: str) -> TagCategory | None:
    return await session.scalar(select(TagCategory).where(TagCategory.code == code))


async def insert_category(session: AsyncSession, code: str, label: str) -> TagCategory | None:
    """The new category, or None when the code is taken (also under concurrency)."""
    new_id = await session.scalar(
        insert(TagCategory)
        .values(code=code, label=label)
        .on_conflict_do_nothing()
        .returning(TagCategory.id)
    )
    if new_id is None:
        return None
    return await session.get(TagCategory, new_id)


async def category_has_tags(session: AsyncSession, category_id: int) -> bool:
    return bool(await session.scalar(select(exists().where(T.category_id == category_id))))


async def delete_category(session: AsyncSession, category_id: int) -> None:
    await session.execute(delete(TagCategory).where(TagCategory.id == category_id))


# ---- tags ------------------------------------------------------------------------------------

_TAG_COLUMNS = (
    T.id,
    T.name,
    TC.code.label("category"),
    TC.label.label("category_label"),
    T.description,
    T.created_at,
    T.updated_at,
)
_TAG_FROM = Tag.__table__.join(TagCategory.__table__, TC.id == T.category_id)


async def get_tag(
    session: AsyncSession, tag_id: int, *, lock: bool = False
) -> dict[str, Any] | None:
    """`lock` (FOR KEY SHARE) keeps the tag from being deleted while it is being assigned."""
    stmt = select(*_TAG_COLUMNS).select_from(_TAG_FROM).where(T.id == tag_id)
    if lock:
        stmt = stmt.with_for_update(read=True, key_share=True, of=Tag.__table__)
    row = (await session.execute(stmt)).mappings().first()
    return dict(row) if row else None


def list_statement(
    *,
    category: str | None,
    q: str | None,
    after: list[Any] | None,
    limit: int,
    visible_customer_ids: Select[Any] | None,
) -> Select[Any]:
    """Tags by category code, then name; with a count over the given customers when asked."""
    columns: list[Any] = list(_TAG_COLUMNS)
    if visible_customer_ids is not None:
        count = (
            select(func.count())
            .where(CT.tag_id == T.id, CT.customer_id.in_(visible_customer_ids))
            .correlate(Tag.__table__)
            .scalar_subquery()
        )
        columns.append(count.label("customer_count"))
    stmt = select(*columns).select_from(_TAG_FROM)
    if category:
        stmt = stmt.where(TC.code == category)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(T.name.ilike(f"%{escaped}%"))
    if after is not None:
        a_cat, a_name, a_id = after
        stmt = stmt.where(
            tuple_(TC.code, T.name, T.id)
            > tuple_(
                literal(a_cat, String), literal(a_name, CITEXT), literal(int(a_id), BigInteger)
            )
        )
    return stmt.order_by(TC.code, T.name, T.id).limit(limit)


async def insert_tag(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """The new tag's id, or None when its category already holds that name (any case)."""
    new_id: int | None = await session.scalar(
        insert(Tag).values(**values).on_conflict_do_nothing().returning(T.id)
    )
    return new_id


async def update_tag(session: AsyncSession, tag_id: int, values: dict[str, Any]) -> bool:
    """False when the change would duplicate a name within a category."""
    try:
        async with session.begin_nested():
            await session.execute(
                update(Tag).where(T.id == tag_id).values(**values, updated_at=func.now())
            )
    except IntegrityError:
        return False
    return True


async def delete_tag(session: AsyncSession, tag_id: int) -> int:
    """Delete the tag (its assignments cascade); returns how many customers carried it."""
    carried = int(await session.scalar(select(func.count()).where(CT.tag_id == tag_id)) or 0)
    await session.execute(delete(Tag).where(T.id == tag_id))
    return carried


# ---- customers' tags -------------------------------------------------------------------------


async def assign(session: AsyncSession, customer_id: int, tag_id: int, actor: str) -> bool:
    """True when the customer did not carry the tag yet."""
    inserted = await session.scalar(
        insert(CustomerTag)
        .values(customer_id=customer_id, tag_id=tag_id, created_by=actor)
        .on_conflict_do_nothing()
        .returning(CT.customer_id)
    )
    return inserted is not None


async def unassign(session: AsyncSession, customer_id: int, tag_id: int) -> bool:
    """True when the customer carried the tag."""
    removed = await session.scalar(
        delete(CustomerTag)
        .where(CT.customer_id == customer_id, CT.tag_id == tag_id)
        .returning(CT.customer_id)
    )
    return removed is not None


def _counts(targets: Any, changed: Any) -> Select[int, int]:
    matched: ColumnElement[int] = select(func.count()).select_from(targets).scalar_subquery()
    done: ColumnElement[int] = select(func.count()).select_from(changed).scalar_subquery()
    return select(matched.label("matched"), done.label("changed"))


async def bulk_add(
    session: AsyncSession, tag_id: int, customer_ids: Select[Any], actor: str
) -> tuple[int, int]:
    """Tag every customer `customer_ids` selects in one statement; (matched, newly tagged).

    INSERT ... SELECT ... ON CONFLICT DO NOTHING: customers already tagged are left alone, so a
    re-run changes nothing.
    """
    targets = customer_ids.cte("targets")
    changed = (
        insert(CustomerTag)
        .from_select(
            ["customer_id", "tag_id", "created_by"],
            select(targets.c.id, literal(tag_id, BigInteger), literal(actor, String)),
        )
        .on_conflict_do_nothing()
        .returning(CT.customer_id)
        .cte("changed")
    )
    row = (await session.execute(_counts(targets, changed))).one()
    return int(row.matched), int(row.changed)


async def bulk_remove(
    session: AsyncSession, tag_id: int, customer_ids: Select[Any]
) -> tuple[int, int]:
    """Untag every customer `customer_ids` selects in one statement; (matched, untagged)."""
    targets = customer_ids.cte("targets")
    changed = (
        delete(CustomerTag)
        .where(CT.tag_id == tag_id, CT.customer_id.in_(select(targets.c.id)))
        .returning(CT.customer_id)
        .cte("changed")
    )
    row = (await session.execute(_counts(targets, changed))).one()
    return int(row.matched), int(row.changed)
