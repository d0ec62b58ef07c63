"""All import SQL: jobs, their issues, matching rows to customers, bulk COPY and set updates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.auth.principal import Principal
from app.customers.repository import READ_COLUMNS
from app.models.customer import Customer
from app.models.imports import ImportIssue, ImportJob
from app.segments import repository as segments_repo

J = ImportJob.__table__.c
E = ImportIssue.__table__.c
C = Customer.__table__.c

# The session-level advisory lock a job's runner holds: a job marked running whose lock is free
# belongs to a process that died (PostgreSQL releases the lock with the connection).
LOCK_NAMESPACE = 7245008

JOB_COLUMNS = [
    J.id,
    J.status,
    J.dry_run,
    J.duplicate_policy,
    J.file_name,
    J.file_format,
    J.file_size,
    J.encoding,
    J.created_by,
    J.rows_read,
    J.imported,
    J.updated,
    J.skipped,
    J.failed,
    J.warnings,
    J.percent,
    J.attempts,
    J.error,
    J.created_at,
    J.started_at,
    J.finished_at,
]

# Columns an import writes, in COPY order.
WRITE_COLUMNS = [
    "kind",
    "name",
    "contacts",
    "phone",
    "raw_phone",
    "email",
    "industry",
    "province",
    "city",
    "address",
    "employee_band",
    "revenue_band",
    "gender",
    "age_band",
    "occupation",
    "price_sensitivity",
    "consumption_habits",
    "source",
    "referrer",
    "first_contact_at",
    "core_needs",
    "need_tags",
    "budget",
    "need_priority",
    "decision_makers",
    "owner_id",
    "last_follow_up_at",
    "next_follow_up_at",
    "lifecycle",
    "lifecycle_baseline",
    "cooperation_status",
    "first_cooperation_date",
    "last_cooperation_date",
    "products",
    "contract_amount",
    "flags",
    "custom",
    "search_text",
    "name_key",
]
UPDATE_COLUMNS = ["id", *WRITE_COLUMNS]


def visible_jobs(principal: Principal) -> Any:
    """An admin sees every import; anyone else the imports they started."""
    if principal.role is not None and principal.role.value == "admin":
        return J.id.is_not(None)
    return J.created_by == principal.subject


# ---- jobs ------------------------------------------------------------------------------------


async def insert_job(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    row = (await session.execute(insert(ImportJob).values(**values).returning(*JOB_COLUMNS))).one()
    return dict(row._mapping)


async def set_spool_path(session: AsyncSession, job_id: int, path: str) -> None:
    await session.execute(update(ImportJob).where(J.id == job_id).values(spool_path=path))


async def get_job(
    session: AsyncSession, principal: Principal, job_id: int
) -> dict[str, Any] | None:
    row = (
        await session.execute(select(*JOB_COLUMNS).where(J.id == job_id, visible_jobs(principal)))
    ).first()
    return dict(row._mapping) if row else None


def list_jobs_statement(principal: Principal, before_id: int | None, limit: int) -> Select[Any]:
    stmt = select(*JOB_COLUMNS).where(visible_jobs(principal)).order_by(J.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(J.id < before_id)
    return stmt


def issues_statement(job_id: int, after_id: int | None, limit: int | None) -> Select[Any]:
    stmt = (
        select(E.id, E.row_no, E.column_name, E.value, E.reason, E.level)
        .where(E.job_id == job_id)
        .order_by(E.id)
    )
    if after_id is not None:
        stmt = stmt.where(E.id > after_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt


async def unfinished_job_ids(conn: AsyncConnection) -> list[int]:
    rows = await conn.execute(
        select(J.id).where(J.status.in_(("queued", "running"))).order_by(J.id)
    )
    return [r[0] for r in rows]


async def try_lock(conn: AsyncConnection, job_id: int) -> bool:
    return bool(
        await conn.scalar(
            text("SELECT pg_try_advisory_lock(:ns, CAST(:id % 2147483647 AS int))"),
            {"ns": LOCK_NAMESPACE, "id": job_id},
        )
    )


async def unlock(conn: AsyncConnection, job_id: int) -> None:
    await conn.execute(
        text("SELECT pg_advisory_unlock(:ns, CAST(:id % 2147483647 AS int))"),
        {"ns": LOCK_NAMESPACE, "id": job_id},
    )


async def claim(conn: AsyncConnection, job_id: int) -> dict[str, Any] | None:
    """Mark the job running (a resumed one counts another attempt); None when it is finished."""
    row = (
        await conn.execute(
            update(ImportJob)
            .where(J.id == job_id, J.status.in_(("queued", "running")))
            .values(
                status="running",
                attempts=J.attempts + 1,
                started_at=func.now(),
                rows_read=0,
                imported=0,
                updated=0,
                skipped=0,
                failed=0,
                warnings=0,
                percent=0,
                error=None,
            )
            .returning(*JOB_COLUMNS, J.spool_path)
        )
    ).first()
    return dict(row._mapping) if row else None


async def progress(conn: AsyncConnection, job_id: int, counts: dict[str, int]) -> None:
    await conn.execute(update(ImportJob).where(J.id == job_id).values(**counts))


async def finish(
    conn: AsyncConnection, job_id: int, *, status: str, counts: dict[str, int], error: str | None
) -> None:
    await conn.execute(
        update(ImportJob)
        .where(J.id == job_id)
        .values(**counts, status=status, error=error, finished_at=func.now())
    )


async def clear_issues(conn: AsyncConnection, job_id: int) -> None:
    await conn.execute(delete(ImportIssue).where(E.job_id == job_id))


async def copy_issues(pg: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    if rows:
        await pg.copy_records_to_table(
            "import_errors",
            records=rows,
            columns=["job_id", "row_no", "column_name", "value", "reason", "level"],
        )


# ---- applying rows ---------------------------------------------------------------------------

# First the code, then the normalized phone, then the email, then the same company name when
# neither side has a phone or email that says otherwise. Deleted customers never match: they are
# ordered last and their id dropped, rather than filtered with `deleted_at IS NULL` — that
# condition lets the planner pick a partial index that scans every live row, which it does while a
# big import's own rows are missing from the statistics (then each batch scans the whole table).
# For the same reason every lookup is a LIMITed lateral subquery: one the planner cannot turn into
# a hash join over the whole table (a per-batch scan of all customers, quadratic in the import).
_MATCH_SQL = """
SELECT s.row_no, crm_name_key(s.name) AS name_key, by_code.id IS NOT NULL AS code_found,
  COALESCE(by_code.id, by_phone.id, by_email.id, by_name.id) AS customer_id
FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[])
  AS s(row_no, code, phone, email, name)
LEFT JOIN LATERAL (
  SELECT CASE WHEN c.deleted_at IS NULL THEN c.id END AS id FROM customers c
  WHERE c.code = s.code LIMIT 1
) AS by_code ON true
LEFT JOIN LATERAL (
  SELECT CASE WHEN c.deleted_at IS NULL THEN c.id END AS id FROM customers c
  WHERE c.phone = s.phone ORDER BY c.deleted_at IS NOT NULL, c.id LIMIT 1
) AS by_phone ON true
LEFT JOIN LATERAL (
  SELECT CASE WHEN c.deleted_at IS NULL THEN c.id END AS id FROM customers c
  WHERE c.email = s.email::citext ORDER BY c.deleted_at IS NOT NULL, c.id LIMIT 1
) AS by_email ON true
LEFT JOIN LATERAL (
  SELECT CASE WHEN c.deleted_at IS NULL THEN c.id END AS id FROM customers c
  WHERE crm_name_key(c.name) = crm_name_key(s.name)
    AND (s.phone IS NULL OR c.phone IS NULL) AND (s.email IS NULL OR c.email IS NULL)
  ORDER BY c.deleted_at IS NOT NULL, c.id LIMIT 1
) AS by_name ON true
"""


async def match(
    pg: Any,
    rows: Sequence[tuple[int, str | None, str | None, str | None, str]],
) -> dict[int, tuple[str, int | None, bool]]:
    """row number → (name key, id of the customer the row matches if any, code found)."""
    cols = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
    records = await pg.fetch(_MATCH_SQL, *[list(c) for c in cols])
    return {r["row_no"]: (r["name_key"], r["customer_id"], r["code_found"]) for r in records}


async def lock_customers(pg: Any, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    # Table columns only: READ_COLUMNS also carries computed ones (the tags subquery).
    table_columns = set(Customer.__table__.c.keys())
    names = ", ".join([*(c.name for c in READ_COLUMNS if c.name in table_columns), "search_text"])
    records = await pg.fetch(
        f"SELECT {names} FROM customers WHERE id = ANY($1::bigint[]) FOR UPDATE",  # noqa: S608
        list(ids),
    )
    return {r["id"]: dict(r) for r in records}


async def prepare_connection(pg: Any) -> None:
    """COPY is binary: teach this connection citext's binary form (plain UTF-8, like text)."""
    schema = await pg.fetchval(
        "SELECT n.nspname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE t.typname = 'citext'"
    )
    await pg.set_type_codec(
        "citext",
        schema=schema,
        encoder=lambda value: str(value).encode(),
        decoder=lambda data: bytes(data).decode(),
        format="binary",
    )


# ---- the job's transaction --------------------------------------------------------------------

# The job's statements each handle one batch; JIT compiling them (which the planner decides on
# cost estimates inflated by a table growing faster than its statistics) took longer than running
# them: 0.8 s per batch of 5,000 for the match alone.
JOB_SETTINGS = ("SET LOCAL jit = off",)


async def prepare_job_transaction(pg: Any) -> None:
    for statement in JOB_SETTINGS:
        await pg.execute(statement)


# ---- new customers: staged, classified and inserted in one statement per batch ---------------
#
# A new customer's classes (value tier, lifecycle, activity) follow from its own columns: it has
# no interactions yet. Writing them with the row, instead of classifying after the insert, saves
# rewriting every imported row (each rewrite inserts into all of customers' indexes again). The
# rules are the segmentation's own statement, read over the staged batch instead of the table;
# its first classification is not logged as a change (it has no earlier class). Should the
# segmentation's statement change shape, NEW_CUSTOMERS_SQL is None and the job inserts, then
# classifies the new ids with the segmentation's classify_customers (slower, same result).

STAGE_TABLE = "import_new"
STAGE_COLUMNS = ["id", "code", *WRITE_COLUMNS, "created_by", "updated_by"]
# Columns the classification sets, and what it sets them to.
_CLASSIFIED = {
    "value_tier": "k.tier",
    "lifecycle": "k.lifecycle",
    "activity": "k.activity",
    "last_follow_up_at": "k.follow_up",
    "last_cooperation_date": "k.coop_date",
}


def _new_customers_sql() -> str | None:
    ctes = segments_repo.CLASSIFY_CTES
    source, scope = "FROM customers c", "/*interaction_scope*/"
    if ctes.count(source) != 1 or ctes.count(scope) != 1:
        return None
    # Staged rows carry their sheet row number as id: no interaction can belong to them.
    ctes = ctes.replace(source, f"FROM {STAGE_TABLE} c").replace(scope, "AND false")
    columns = [c for c in STAGE_COLUMNS if c != "id"]
    targets = [*columns, *(c for c in _CLASSIFIED if c not in columns)]
    values = [_CLASSIFIED.get(c, f"n.{c}") for c in targets]
    sql = (
        f"{ctes}\nINSERT INTO customers ({', '.join(targets)})\n"
        f"SELECT {', '.join(values)}\nFROM {STAGE_TABLE} n JOIN k ON k.id = n.id"
    )
    return sql if set(text(sql)._bindparams) <= {"tz"} else None


NEW_CUSTOMERS_SQL = _new_customers_sql()


async def prepare_stage_table(pg: Any) -> None:
    # Defaults (created_at, classes) as in customers; id holds the sheet row number.
    await pg.execute(
        f"CREATE TEMP TABLE {STAGE_TABLE} (LIKE customers INCLUDING DEFAULTS) ON COMMIT DROP"
    )


async def insert_customers(
    conn: AsyncConnection, pg: Any, rows: Sequence[Sequence[Any]], *, tz: str
) -> list[int]:
    """Insert staged rows (STAGE_COLUMNS, on `conn`, whose driver connection is `pg`) with their
    classes; returns the ids still to classify (only when NEW_CUSTOMERS_SQL is None)."""
    if not rows:
        return []
    await pg.execute(f"TRUNCATE {STAGE_TABLE}")
    await pg.copy_records_to_table(STAGE_TABLE, records=rows, columns=STAGE_COLUMNS)
    if NEW_CUSTOMERS_SQL is not None:
        await conn.execute(text(NEW_CUSTOMERS_SQL), {"tz": tz})
        return []
    columns = ", ".join(c for c in STAGE_COLUMNS if c != "id")
    inserted = await pg.fetch(
        f"INSERT INTO customers ({columns}) SELECT {columns} FROM {STAGE_TABLE} RETURNING id"  # noqa: S608
    )
    return [r["id"] for r in inserted]


async def classify(conn: AsyncConnection, ids: Sequence[int], *, tz: str) -> None:
    """Reclassify the customers an import changed (logged with cause `import`)."""
    if not ids:
        return
    session = AsyncSession(bind=conn)
    await segments_repo.classify_customers(session, list(ids), cause="import", tz=tz)


async def prepare_update_table(pg: Any) -> None:
    cols = ", ".join(UPDATE_COLUMNS)
    await pg.execute(
        f"CREATE TEMP TABLE import_updates ON COMMIT DROP AS SELECT {cols} FROM customers "  # noqa: S608
        "WITH NO DATA"
    )


async def apply_updates(pg: Any, rows: Sequence[Sequence[Any]], actor: str) -> None:
    if not rows:
        return
    await pg.execute("TRUNCATE import_updates")
    await pg.copy_records_to_table("import_updates", records=rows, columns=UPDATE_COLUMNS)
    assignments = ", ".join(f"{c} = u.{c}" for c in WRITE_COLUMNS)
    await pg.execute(
        f"UPDATE customers c SET {assignments}, version = c.version + 1, updated_at = now(), "  # noqa: S608
        "updated_by = $1 FROM import_updates u WHERE c.id = u.id",
        actor,
    )
