"""All customer SQL. Visibility lives here, in `readable` and `writable`, and nowhere else."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Float,
    Numeric,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import (
    ARRAY,
    DOUBLE_PRECISION,
    JSONB,
    aggregate_order_by,
    insert,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.auth.principal import Principal
from app.core import rawsql
from app.core.db import Reader, Writer
from app.models.customer import Customer, CustomField, SourceChannel
from app.models.tag import CustomerTag, Tag, TagCategory

C = Customer.__table__.c
CT = CustomerTag.__table__.c
T = Tag.__table__.c
TC = TagCategory.__table__.c

# One tag's name and category code, looked up per tag row of a customer: LIMIT 1 keeps it a
# subquery the planner runs as an index-free nested loop over the tiny tags table. Joined
# plainly, the planner hashed the tags table afresh for every customer of a page, which was
# about a third of a list page's database time (0.7 of 1.9 ms at 1M customers).
_TAG = (
    select(
        T.name.label("name"),
        select(TC.code).where(TC.id == T.category_id).scalar_subquery().label("code"),
    )
    .where(T.id == CT.tag_id)
    .limit(1)
    .lateral("tag")
)

# A customer's tags as one JSON array computed with the row, so a page needs no second query.
TAGS = (
    select(
        func.coalesce(
            func.jsonb_agg(
                aggregate_order_by(
                    func.jsonb_build_object(
                        "id", CT.tag_id, "name", _TAG.c.name, "category", _TAG.c.code
                    ),
                    _TAG.c.code,
                    _TAG.c.name,
                ),
                type_=JSONB,
            ),
            literal_column("'[]'::jsonb", JSONB),
            type_=JSONB,
        )
    )
    .select_from(CustomerTag.__table__.join(_TAG, true()))
    .where(CT.customer_id == C.id)
    .correlate(Customer.__table__)
    .scalar_subquery()
    .label("tags")
)

# Columns a read returns (search_text and bookkeeping stay inside).
READ_COLUMNS = [
    C.id,
    C.code,
    C.kind,
    C.name,
    C.contacts,
    C.phone,
    C.raw_phone,
    C.email,
    C.industry,
    C.province,
    C.city,
    C.address,
    C.employee_band,
    C.revenue_band,
    C.gender,
    C.age_band,
    C.occupation,
    C.price_sensitivity,
    C.consumption_habits,
    C.source,
    C.referrer,
    C.first_contact_at,
    C.core_needs,
    C.need_tags,
    C.budget,
    C.need_priority,
    C.decision_makers,
    C.owner_id,
    C.last_follow_up_at,
    C.next_follow_up_at,
    C.lifecycle,
    C.lifecycle_baseline,
    C.value_tier,
    C.activity,
    C.rfm_r,
    C.rfm_f,
    C.rfm_m,
    C.rfm_segment,
    C.cooperation_status,
    C.first_cooperation_date,
    C.last_cooperation_date,
    C.products,
    C.contract_amount,
    C.flags,
    TAGS,
    C.custom,
    C.id_number_enc,
    C.bank_account_enc,
    C.pii_key_id,
    C.version,
    C.created_at,
    C.updated_at,
    C.created_by,
    C.updated_by,
    C.deleted_at,
]


def _columns_sql(columns: list[Any]) -> Any:
    """`columns` as one literal SELECT-list element, rendered once: a list page's statement is
    built per request, and 60 column objects made SQLAlchemy coerce and cache-key each of them
    every time (a third of the list's CPU). The raw path reads rows by their SQL names."""
    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    pg = dialect()  # type: ignore[no-untyped-call]
    sql = select(*columns).compile(dialect=pg, compile_kwargs={"literal_binds": True}).string
    head, tail = "SELECT ", "\nFROM customers"
    if not (sql.startswith(head) and sql.endswith(tail)):
        raise RuntimeError("unexpected rendering of the customer columns")
    return literal_column(sql[len(head) : -len(tail)])


READ_COLUMNS_SQL = _columns_sql(READ_COLUMNS)


def readable_for(
    principal: Principal, t: Any, *, include_deleted: bool = False, user: Any = None
) -> ColumnElement[bool]:
    """The customers `principal` may see, for table or alias `t`: a sales rep sees their own
    and the shared pool; every other role and service accounts see all. `user`: what stands
    for the caller's user id (a bind parameter in a statement compiled once per shape)."""
    live = true() if include_deleted else t.deleted_at.is_(None)
    if principal.role == "marketing":
        # A withdrawn marketing consent stops processing for that purpose (SPEC §12).
        live = and_(live, ~t.flags.contains(["no_marketing"]))
    if principal.own_customers_only:
        me = principal.user_id if user is None else user
        return and_(live, or_(t.owner_id == me, t.owner_id.is_(None)))
    if principal.kind in {"user", "service", "system", "webhook"}:
        return live
    return false()


def readable(principal: Principal, *, include_deleted: bool = False) -> ColumnElement[bool]:
    return readable_for(principal, C, include_deleted=include_deleted)


def visibility_shape(principal: Principal) -> tuple[bool, bool, bool]:
    """What `readable_for` depends on besides the user id: one compiled statement each."""
    return (
        principal.role == "marketing",
        principal.own_customers_only,
        principal.kind in {"user", "service", "system", "webhook"},
    )


# Hot statements: compiled once, run on the asyncpg connection (app.core.rawsql).
raw_fetch = rawsql.raw_fetch
fetch_statement = rawsql.fetch_statement


def writable(principal: Principal, *, user: Any = None) -> ColumnElement[bool]:
    """The customers `principal` may change: a sales rep only their own (claim the pool first).
    `user`: what stands for the caller's user id (as in `readable_for`)."""
    if principal.own_customers_only:
        me = principal.user_id if user is None else user
        return and_(C.deleted_at.is_(None), C.owner_id == me)
    return C.deleted_at.is_(None)


async def customer_id_for(
    session: Reader, principal: Principal, code: str, *, for_write: bool = False
) -> int | None:
    """The id behind a code the caller may see (or change); None means 404 for the caller."""
    cond = writable(principal) if for_write else readable(principal)
    return await session.scalar(select(C.id).where(C.code == code, cond))


async def get(
    session: Reader, principal: Principal, code: str, *, include_deleted: bool = False
) -> dict[str, Any] | None:
    # A hot path: compiled once per visibility shape, run on the asyncpg connection.
    shape = visibility_shape(principal)

    def build() -> Select[Any]:
        cond = readable_for(
            principal,
            C,
            include_deleted=include_deleted,
            user=bindparam("uid", None, type_=C.owner_id.type),
        )
        return select(*READ_COLUMNS).where(
            C.code == bindparam("code", None, type_=C.code.type), cond
        )

    rows = await raw_fetch(
        session,
        ("get", shape, include_deleted),
        build,
        {"code": code, "uid": principal.user_id},
    )
    return rows[0] if rows else None


async def lock_for_update(
    session: AsyncSession, principal: Principal, code: str
) -> dict[str, Any] | None:
    row = (
        (
            await session.execute(
                select(*READ_COLUMNS, C.search_text)
                .where(C.code == code, writable(principal))
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def format_code(day: date, number: int) -> str:
    return f"C{day:%Y%m%d}{number:03d}"


@asynccontextmanager
async def outside_transaction(session: Writer) -> AsyncIterator[bool]:
    """Run the statements of this block on the session's connection each as its own
    transaction, ahead of the session's transaction (PostgreSQL's BEGIN is only sent, lazily,
    at the first statement after the block). Yields whether that is so.

    For writes that must not hold their row locks until the request commits (the day's code
    counter, the round-robin cursor) and for reads that need no snapshot with the rest. When
    the session's transaction has already begun, the block simply runs inside it: still
    correct, the locks are just held longer."""
    raw = await rawsql.pooled_connection(await rawsql.connection_of(session))
    adapter: Any = raw.dbapi_connection  # SQLAlchemy's asyncpg adapter: BEGIN comes lazily
    driver: Any = raw.driver_connection
    if driver.is_in_transaction() or adapter.autocommit:
        yield False
        return
    adapter.autocommit = True
    try:
        yield True
    finally:
        adapter.autocommit = False


_COUNTER_SQL = text(
    "INSERT INTO customer_code_counters (day, last_value) VALUES (:day, :n) "
    "ON CONFLICT (day) DO UPDATE "
    "SET last_value = customer_code_counters.last_value + :n RETURNING last_value"
)


async def take_code(session: Writer, day: date) -> str:
    """The day's next code, taken in a transaction of its own before the request's: the
    counter row is locked for one statement, so concurrent creates never queue behind each
    other. A create that then fails leaves a gap (codes are unique, never reused, not
    gap-free: SPEC §2). Once the session's transaction has begun, it is taken inside it."""
    rows = await raw_fetch(
        session, "take_code", _COUNTER_SQL, {"day": day, "n": 1}, transactional=False
    )
    return format_code(day, int(rows[0]["last_value"]))


async def reserve_codes(session: AsyncSession | AsyncConnection, day: date, count: int) -> int:
    """Take `count` consecutive numbers of `day` with one statement; returns the first."""
    last = await session.scalar(_COUNTER_SQL, {"day": day, "n": count})
    assert last is not None
    return int(last) - count + 1


# A new customer has no tags yet (and INSERT ... RETURNING cannot correlate the subquery).
_INSERT_RETURNING = [col for col in READ_COLUMNS if col is not TAGS]


async def insert_with_code(session: Writer, code: str, values: dict[str, Any]) -> dict[str, Any]:
    """Insert a customer under a code already taken (`take_code`); one round trip."""
    names = ("code", *sorted(values))

    def build() -> Any:
        binds = {n: bindparam(n, None, type_=C[n].type) for n in names}
        return insert(Customer).values(binds).returning(*_INSERT_RETURNING)

    rows = await raw_fetch(session, ("insert", names), build, {**values, "code": code})
    return {**rows[0], "tags": []}


async def insert_customer(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    row = (
        (await session.execute(insert(Customer).values(**values).returning(*_INSERT_RETURNING)))
        .mappings()
        .one()
    )
    return {**row, "tags": []}


async def update_customer(
    session: Writer, customer_id: int, values: dict[str, Any]
) -> dict[str, Any]:
    row = (
        (
            await session.execute(
                update(Customer)
                .where(C.id == customer_id)
                .values(**values, version=C.version + 1, updated_at=func.now())
                .returning(*READ_COLUMNS)
            )
        )
        .mappings()
        .one()
    )
    return dict(row)


async def set_deleted(
    session: AsyncSession, customer_id: int, *, deleted: bool, actor: str
) -> dict[str, Any]:
    values: dict[str, Any] = (
        {"deleted_at": func.now(), "deleted_by": actor}
        if deleted
        else {"deleted_at": None, "deleted_by": None}
    )
    return await update_customer(session, customer_id, {**values, "updated_by": actor})


async def cooperation_of(session: Writer, customer_id: int) -> dict[str, Any] | None:
    """The customer's cooperation fields, its row locked (a hot statement: every deal runs it)."""

    def build() -> Select[Any]:
        return (
            select(C.code, C.cooperation_status, C.first_cooperation_date)
            .where(C.id == bindparam("id", None, type_=C.id.type))
            .with_for_update()
        )

    rows = await raw_fetch(session, "customers.cooperation_of", build, {"id": customer_id})
    return rows[0] if rows else None


async def survivor_code(session: Reader, code: str) -> str | None:
    """Follow merge links from a merged code to the live survivor's code."""
    found = await session.scalar(
        text(
            """
            WITH RECURSIVE chain(id, merged_into, code, depth) AS (
                SELECT id, merged_into, code, 0 FROM customers WHERE code = :code
                UNION ALL
                SELECT c.id, c.merged_into, c.code, chain.depth + 1
                FROM customers c JOIN chain ON c.id = chain.merged_into
                WHERE chain.depth < 20
            )
            SELECT code FROM chain WHERE merged_into IS NULL AND depth > 0
            """
        ),
        {"code": code},
    )
    return None if found is None else str(found)


async def deleted_customer_id(session: AsyncSession, code: str) -> int | None:
    # A merged customer comes back by undoing its merge, not by a restore.
    return await session.scalar(
        select(C.id).where(C.code == code, C.deleted_at.is_not(None), C.merged_into.is_(None))
    )


async def user_exists(session: Writer, user_id: int) -> bool:
    return bool(
        await session.scalar(
            text("SELECT EXISTS (SELECT 1 FROM users WHERE id = :id AND is_active)"),
            {"id": user_id},
        )
    )


# ---- source channels and custom fields -------------------------------------------------------


class SourceDef(NamedTuple):
    code: str
    label: str
    aliases: list[str]
    active: bool


class FieldDef(NamedTuple):
    key: str
    label: str
    type: str
    options: list[str]
    required: bool
    retired: bool


# Definitions are read on every customer write; a short per-process cache saves the round
# trips. A change made in this process clears it at once; other processes see it within the TTL.
DEFINITIONS_TTL_SECONDS = 5.0
_definitions: dict[str, tuple[float, Any]] = {}


def clear_definition_cache() -> None:
    _definitions.clear()


async def _cached(key: str, load: Any) -> Any:
    hit = _definitions.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < DEFINITIONS_TTL_SECONDS:
        return hit[1]
    value = await load()
    _definitions[key] = (now, value)
    return value


async def source_channels(session: Writer) -> list[SourceDef]:
    async def load() -> list[SourceDef]:
        rows = await session.execute(
            select(
                SourceChannel.code, SourceChannel.label, SourceChannel.aliases, SourceChannel.active
            ).order_by(SourceChannel.code)
        )
        return [SourceDef(r.code, r.label, list(r.aliases), r.active) for r in rows]

    result: list[SourceDef] = await _cached("sources", load)
    return result


async def custom_fields(session: Reader, *, include_retired: bool = False) -> list[FieldDef]:
    async def load() -> list[FieldDef]:
        rows = await session.execute(
            select(
                CustomField.key,
                CustomField.label,
                CustomField.type,
                CustomField.options,
                CustomField.required,
                CustomField.retired_at,
            ).order_by(CustomField.id)
        )
        return [
            FieldDef(r.key, r.label, r.type, list(r.options), r.required, r.retired_at is not None)
            for r in rows
        ]

    every: list[FieldDef] = await _cached("fields", load)
    return every if include_retired else [f for f in every if not f.retired]


# ---- list ------------------------------------------------------------------------------------

SORT_COLUMNS = {
    "created_at": C.created_at,
    "updated_at": C.updated_at,
    "name": C.name,
    "code": C.code,
    "contract_amount": C.contract_amount,
    "last_follow_up_at": C.last_follow_up_at,
    "next_follow_up_at": C.next_follow_up_at,
    "p_alive": C.p_alive,
    "expected_purchases_90d": C.expected_purchases_90d,
}


_CODE_SHAPE = re.compile(r"^c\d{9,}$")


def search_class(text_q: str, digits: str | None, *, fuzzy: bool = False) -> str:
    """Which kind of search `q` makes (each a statement of its own shape)."""
    if _CODE_SHAPE.match(text_q):
        return "code"
    if digits:
        return "digits"
    if len(text_q) <= 2 and not text_q.isascii():
        return "short"
    return "fuzzy" if fuzzy and len(text_q) >= 3 else "text"


def search_values(text_q: str, digits: str | None) -> dict[str, Any]:
    """The values of a search's bind parameters (`q_code`, or the `q_like` pattern and the
    `q_term` it ranks by), the same for a statement built now or compiled earlier."""
    if _CODE_SHAPE.match(text_q):
        return {"q_code": text_q.upper()}
    if digits:
        return {"q_like": "%" + digits + "%", "q_term": digits}
    escaped = text_q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if len(text_q) <= 2 and not text_q.isascii():
        return {"q_like": escaped + "%", "q_term": text_q}
    return {"q_like": "%" + escaped + "%", "q_term": text_q}


def search_condition(
    text_q: str, digits: str | None, *, fuzzy: bool = False
) -> tuple[ColumnElement[bool], Any]:
    """What `q` matches, and a score that ranks it.

    A code finds its customer exactly; digits find phones by substring; text finds names,
    pinyin and emails by trigram-indexed substring, and with `fuzzy` also by word similarity
    (typos) — a costlier search the list runs only when the substring finds nothing. One or two
    Chinese characters are too short for trigrams: they match names by prefix (btree).

    The values are the named bind parameters of `search_values`, so a statement compiled once
    per `search_class` serves every term of that class (`shaped_list`)."""
    kind = search_class(text_q, digits, fuzzy=fuzzy)
    values = search_values(text_q, digits)
    # float8 throughout, so a score survives the JSON round trip of a cursor exactly.
    if kind == "code":
        return C.code == bindparam("q_code", values["q_code"], type_=C.code.type), cast(
            literal(3.0), DOUBLE_PRECISION
        )
    like = bindparam("q_like", values["q_like"], type_=Text)
    term = bindparam("q_term", values["q_term"], type_=Text)
    if kind == "digits":
        cond: ColumnElement[bool] = C.search_text.like(like)
        return cond, cast(func.word_similarity(term, C.search_text), DOUBLE_PRECISION)
    if kind == "short":
        cond = or_(C.name.like(like), C.name == term)
        return cond, cast(case((C.name == term, 1.0), else_=0.5), DOUBLE_PRECISION)
    conds: list[ColumnElement[bool]] = [C.search_text.ilike(like)]
    if kind == "fuzzy":
        # `<%` is word_similarity above pg_trgm.word_similarity_threshold: tolerates typos.
        conds.append(term.op("<%")(C.search_text))
    score = cast(
        case((func.lower(C.name) == term, 1.0), else_=0.0)
        + cast(func.word_similarity(term, C.search_text), DOUBLE_PRECISION),
        DOUBLE_PRECISION,
    )
    return or_(*conds), score


def can_be_fuzzy(q: str) -> bool:
    """Whether a wider, typo-tolerant second search makes sense for `q`."""
    from app.customers.normalize import query_forms

    text_q, digits = query_forms(q)
    return not digits and len(text_q) >= 3 and not _CODE_SHAPE.match(text_q)


def filter_conditions(
    f: dict[str, Any], principal: Principal, now: datetime, *, me: Any = None
) -> list[ColumnElement[bool]]:
    """`me`: what stands for the caller's user id in `owner=me` (a bind parameter in a
    statement compiled once per shape); by default the id itself."""
    conds: list[ColumnElement[bool]] = []
    owners = f.get("owner") or []
    if owners:
        parts: list[ColumnElement[bool]] = []
        ids = []
        for o in owners:
            if o == "none":
                parts.append(C.owner_id.is_(None))
            elif o == "me" and me is not None:
                parts.append(C.owner_id == me)
            elif o == "me":
                ids.append(principal.user_id or -1)
            else:
                ids.append(int(o))
        if ids:
            parts.append(_any(C.owner_id, ids))
        conds.append(or_(*parts))
    for key, col in (
        ("tier", C.value_tier),
        ("lifecycle", C.lifecycle),
        ("status", C.cooperation_status),
        ("source", C.source),
        ("kind", C.kind),
    ):
        if f.get(key):
            conds.append(_any(col, list(f[key])))
    if f.get("industry"):
        divisions = [i for i in f["industry"] if len(i) == 2]
        sections = [i for i in f["industry"] if len(i) == 1]
        from app.customers.industries import DIVISIONS

        for s in sections:
            divisions.extend(code for code, (sec, _) in DIVISIONS.items() if sec == s)
        conds.append(_any(C.industry, divisions + sections))
    if f.get("region"):
        regions = list(f["region"])
        conds.append(or_(_any(C.province, regions), _any(C.city, regions)))
    if f.get("flag"):
        # The column is a generic ARRAY; the PostgreSQL one knows && (overlap).
        conds.append(type_coerce(C.flags, ARRAY(Text)).overlap(f["flag"]))
    if f.get("tag"):
        refs = list(dict.fromkeys(f["tag"]))
        if f.get("tag_mode") == "all":
            conds.extend(has_tag([ref]) for ref in refs)
        else:
            conds.append(has_tag(refs))
    if f.get("stale_days"):
        cutoff = now - timedelta(days=int(f["stale_days"]))
        conds.append(
            or_(
                C.last_follow_up_at < cutoff,
                and_(C.last_follow_up_at.is_(None), C.created_at < cutoff),
            )
        )
    for field in ("id_number", "bank_account"):
        if f.get(field):
            from app.privacy.crypto import blind_index

            conds.append(C[f"{field}_bidx"] == blind_index(f[field], field=field))
    if f.get("created_from"):
        conds.append(C.created_at >= f["created_from"])
    if f.get("created_to"):
        conds.append(C.created_at < f["created_to"])
    for key, col, op in (
        ("p_alive_min", C.p_alive, "ge"),
        ("p_alive_max", C.p_alive, "le"),
        ("expected_purchases_min", C.expected_purchases_90d, "ge"),
        ("expected_purchases_max", C.expected_purchases_90d, "le"),
    ):
        if f.get(key) is not None:
            conds.append(col >= f[key] if op == "ge" else col <= f[key])
    return conds


def has_tag(refs: list[str]) -> ColumnElement[bool]:
    """The customer carries a tag named by one of `refs`: an id, or a name in any category."""
    # A reference that looks like an id may also be a name ("2026"); it matches either way.
    ids = [int(r) for r in refs if r.isascii() and r.isdigit() and len(r) <= 18]
    named = select(T.id).where(or_(_any(T.id, ids), _any(T.name, refs)))
    return exists().where(CT.customer_id == C.id, CT.tag_id.in_(named))


def _any(col: Any, values: list[Any]) -> ColumnElement[bool]:
    """`col IN (values)` without an expanding parameter (statements compiled once per shape):
    one value is `col = v`, as PostgreSQL plans a one-item IN (an index on (col, sort) then
    delivers the order); more are `col = ANY(array)`, as PostgreSQL plans an IN list."""
    if len(values) == 1:
        one: ColumnElement[bool] = col == values[0]
        return one
    cond: ColumnElement[bool] = col == any_(cast(values, ARRAY(col.type)))
    return cond


def custom_condition(key: str, op: str, value: Any, field_type: str) -> ColumnElement[bool]:
    if op == "eq":
        contains: ColumnElement[bool] = C.custom.contains({key: value})
        return contains
    accessor = C.custom[key].astext
    typed: Any = accessor.cast(Numeric) if field_type == "number" else accessor
    cond: ColumnElement[bool] = typed >= value if op == "gte" else typed <= value
    return cond


def _coerce(col: Any, value: Any) -> Any:
    """Cursor values travel as JSON strings; give them back their column's type."""
    if value is None:
        return None
    if isinstance(col.type, DateTime):
        return datetime.fromisoformat(value)
    if isinstance(col.type, Float):
        return float(value)
    if isinstance(col.type, Numeric):
        return Decimal(str(value))
    return value


# Sort columns that are never NULL: a plain (column, id) keyset lets the index deliver order.
NOT_NULL_SORTS = {"created_at", "updated_at", "name", "code"}


def _owner_filter_within_visibility(principal: Principal, filters: dict[str, Any]) -> bool:
    owners = set(filters.get("owner") or [])
    mine = {"me", "none", str(principal.user_id)}
    return bool(principal.own_customers_only and owners and owners <= mine)


def _visibility(
    principal: Principal, filters: dict[str, Any], *, user: Any = None
) -> ColumnElement[bool]:
    """`readable`, without its owner clause when the owner filter already lies within it (a
    rep listing their own or the pool): the redundant OR misleads the planner's estimates."""
    if _owner_filter_within_visibility(principal, filters):
        live: ColumnElement[bool] = C.deleted_at.is_(None)
        return live
    return readable_for(principal, C, user=user)


def list_conditions(
    principal: Principal,
    filters: dict[str, Any],
    now: datetime,
    extra: list[ColumnElement[bool]] | None = None,
    *,
    fuzzy: bool = False,
    user: Any = None,
) -> tuple[list[ColumnElement[bool]], Any]:
    """The WHERE of a filtered list the caller may see, and the search score when `q` is set.
    `user`: what stands for the caller's user id (see `readable_for`)."""
    conds = [
        _visibility(principal, filters, user=user),
        *filter_conditions(filters, principal, now, me=user),
        *(extra or []),
    ]
    score = None
    if filters.get("q"):
        from app.customers.normalize import query_forms

        text_q, digits = query_forms(filters["q"])
        cond, score = search_condition(text_q, digits, fuzzy=fuzzy)
        conds.append(cond)
    return conds, score


def list_statement(
    principal: Principal,
    filters: dict[str, Any],
    *,
    sort: str,
    after: list[Any] | None,
    limit: int,
    now: datetime,
    extra: list[ColumnElement[bool]] | None = None,
    fuzzy: bool = False,
    bound: bool = False,
) -> Select[Any]:
    """`bound`: the caller's user id and the cursor's values are the bind parameters `uid`,
    `after_val` and `after_id` (see `shaped_list`), not values of this statement."""
    user = bindparam("uid", None, type_=C.owner_id.type) if bound else None
    conds, score = list_conditions(principal, filters, now, extra, fuzzy=fuzzy, user=user)
    if sort == "relevance":
        if score is None:
            sort = "-created_at"
        else:
            stmt = (
                select(READ_COLUMNS_SQL, score.label("_score"))
                .select_from(Customer.__table__)
                .where(*conds)
            )
            if after is not None:
                s_val, s_id = after[0], after[1]
                if bound:
                    s_val = bindparam("after_val", None, type_=DOUBLE_PRECISION)
                    s_id = bindparam("after_id", None, type_=C.id.type)
                conds_after = or_(score < s_val, and_(score == s_val, C.id > s_id))
                stmt = stmt.where(conds_after)
            return stmt.order_by(score.desc(), C.id.asc()).limit(limit)
    desc = sort.startswith("-")
    name = sort.lstrip("-")
    col = SORT_COLUMNS[name]
    stmt = (
        select(READ_COLUMNS_SQL, col.label("_sort")).select_from(Customer.__table__).where(*conds)
    )
    c_null, c_val, c_id = False, None, None
    if after is not None:
        c_null = after[0]
        if bound:
            c_val = bindparam("after_val", None, type_=col.type)
            c_id = bindparam("after_id", None, type_=C.id.type)
        else:
            c_val, c_id = _coerce(col, after[1]), after[2]
    if name in NOT_NULL_SORTS:
        if after is not None:
            key = tuple_(col, C.id)
            # Bind parameters compare as a row of their own (a Python pair would be bound whole).
            val: Any = tuple_(c_val, c_id) if bound else (c_val, c_id)
            stmt = stmt.where(key < val if desc else key > val)
        order = [col.desc(), C.id.desc()] if desc else [col.asc(), C.id.asc()]
        return stmt.order_by(*order).limit(limit)
    if after is not None:
        if desc:
            if c_null:
                stmt = stmt.where(col.is_(None), C.id < c_id)
            else:
                stmt = stmt.where(or_(col.is_(None), col < c_val, and_(col == c_val, C.id < c_id)))
        elif c_null:
            stmt = stmt.where(col.is_(None), C.id > c_id)
        else:
            stmt = stmt.where(or_(col.is_(None), col > c_val, and_(col == c_val, C.id > c_id)))
    nulls_last = col.is_(None).asc()
    order = [nulls_last, col.desc(), C.id.desc()] if desc else [nulls_last, col.asc(), C.id.asc()]
    return stmt.order_by(*order).limit(limit)


# Filters on a few code values. A list page filtered by these alone (no custom field, date or
# time-relative condition), with or without a search, is compiled once per combination of
# their values, the kind of search (`search_class`), sort, limit and cursor kind, and reused
# with the caller's id, the search term and the cursor bound as parameters: building and
# cache-keying the Core statement was a fifth of a list page's CPU.
SHAPED_FILTERS = frozenset(
    {"owner", "tier", "lifecycle", "status", "source", "kind", "industry", "region", "flag", "tag"}
)


def list_shape(
    principal: Principal,
    filters: dict[str, Any],
    *,
    sort: str,
    after: list[Any] | None,
    limit: int,
    extra: list[ColumnElement[bool]] | None,
    fuzzy: bool = False,
) -> tuple[Any, ...] | None:
    """The key a list page's statement is compiled under, or None when it is built per
    request (`extra` conditions, or a filter outside `SHAPED_FILTERS` and `q`)."""
    q = filters.get("q")
    if extra or (sort == "relevance" and not q):
        return None
    values: list[tuple[str, Any]] = []
    for key, value in filters.items():
        if value is None or value == [] or value == {} or key == "tag_mode":
            continue
        if key == "q":
            from app.customers.normalize import query_forms

            # An empty term searches nothing (`list_conditions`): no search in the key either.
            if value:
                values.append(("q", search_class(*query_forms(value), fuzzy=fuzzy)))
            continue
        if key not in SHAPED_FILTERS:
            return None
        values.append((key, tuple(value)))
    if filters.get("tag"):
        values.append(("tag_mode", filters.get("tag_mode")))
    return (
        "list",
        visibility_shape(principal),
        _owner_filter_within_visibility(principal, filters),
        tuple(values),
        sort,
        None if after is None else sort == "relevance" or bool(after[0]),
        limit,
    )


async def shaped_list(
    session: Reader,
    principal: Principal,
    shape: tuple[Any, ...],
    filters: dict[str, Any],
    *,
    sort: str,
    after: list[Any] | None,
    limit: int,
    now: datetime,
    fuzzy: bool = False,
) -> list[dict[str, Any]]:
    """Rows of a list page whose statement is compiled once under `shape` (`list_shape`)."""
    values: dict[str, Any] = {"uid": principal.user_id}
    if filters.get("q"):
        from app.customers.normalize import query_forms

        values |= search_values(*query_forms(filters["q"]))
    if after is not None and sort == "relevance":
        values["after_val"], values["after_id"] = float(after[0]), after[1]
    elif after is not None:
        col = SORT_COLUMNS[sort.lstrip("-")]
        values["after_val"] = _coerce(col, after[1])
        values["after_id"] = after[2]

    def build() -> Select[Any]:
        return list_statement(
            principal,
            filters,
            sort=sort,
            after=after,
            limit=limit,
            now=now,
            fuzzy=fuzzy,
            bound=True,
        )

    return await raw_fetch(session, shape, build, values)


def member_conditions(
    principal: Principal,
    filters: dict[str, Any],
    now: datetime,
    extra: list[ColumnElement[bool]] | None = None,
) -> list[ColumnElement[bool]]:
    """The customers matching `filters` that `principal` may see (count and bulk tagging; the
    list builds the same conditions with its ranking score)."""
    conds = [
        _visibility(principal, filters),
        *filter_conditions(filters, principal, now),
        *(extra or []),
    ]
    if filters.get("q"):
        from app.customers.normalize import query_forms

        text_q, digits = query_forms(filters["q"])
        conds.append(search_condition(text_q, digits)[0])
    return conds


def count_statement(
    principal: Principal,
    filters: dict[str, Any],
    now: datetime,
    extra: list[ColumnElement[bool]] | None = None,
) -> Select[Any]:
    conds = member_conditions(principal, filters, now, extra)
    return select(func.count()).select_from(Customer.__table__).where(*conds)


def member_ids_statement(
    principal: Principal,
    filters: dict[str, Any],
    now: datetime,
    extra: list[ColumnElement[bool]] | None = None,
    *,
    writable_only: bool = False,
) -> Select[Any]:
    """SELECT id of the matching customers, to embed in set-based statements (bulk tagging)."""
    conds = member_conditions(principal, filters, now, extra)
    if writable_only:
        conds.append(writable(principal))
    return select(C.id).where(*conds)


def code_ids_statement(
    principal: Principal, codes: list[str], *, writable_only: bool = False
) -> Select[Any]:
    """SELECT id of the customers with these codes that `principal` may see (or change)."""
    # One array parameter: any number of codes, never one bind parameter per code.
    cond = writable(principal) if writable_only else readable(principal)
    return select(C.id).where(C.code == any_(cast(codes, ARRAY(C.code.type))), cond)
