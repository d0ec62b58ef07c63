"""Prediction SQL: purchase histories summarised per customer, grouped for the fit, and the
predictions written back in one UPDATE from arrays.

A history is (x, t_x, T) in whole days of the service's time zone: x is the number of days
with a purchase after the first one (several purchases on one day are one purchase occasion,
as in the paper's data), t_x the day of the last purchase counted from the first, T the last
observed day counted from the first. Customers who never bought have no history.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.prediction import PredictionFit

# One session's scratch table: the grouped fit input and the UPDATE read the same histories
# without aggregating the interactions twice. Dropped at commit.
_DROP_HISTORIES = text("DROP TABLE IF EXISTS pg_temp.purchase_histories")
_CREATE_HISTORIES = text(
    """
    CREATE TEMP TABLE purchase_histories (
        -- One row a customer (grouped so); read whole by a hash join or a grouping, so no
        -- index to maintain.
        customer_id bigint NOT NULL,
        x integer NOT NULL,
        t_x integer NOT NULL,
        t integer NOT NULL,
        -- When its newest purchase was recorded (or last changed).
        purchase_recorded_at timestamptz NOT NULL
    ) ON COMMIT DROP
    """
)

# The sweep's RFM scoring reads every live buyer's purchases (through any day): the last day,
# how many and their sum. Filled by the same statement, so purchases are scanned once a sweep.
_DROP_TOTALS = text("DROP TABLE IF EXISTS pg_temp.purchase_totals")
_CREATE_TOTALS = text(
    """
    CREATE TEMP TABLE purchase_totals (
        -- One row a customer; read whole by a hash join, so no index to maintain.
        customer_id bigint NOT NULL,
        last_day date NOT NULL,
        purchases bigint NOT NULL,
        amount numeric
    ) ON COMMIT DROP
    """
)

# One pass over the purchases in (customer, time) order: the partial index
# ix_interactions_purchases (migration 0011) holds them so, with every column read, so the scan
# reads no table pages, the window needs no sort and the aggregate streams one customer at a
# time (grouping by day first took two hash tables that spilled to disk on a large base). A
# purchase day counts once: a row starts a day when its local date differs from the previous
# purchase's (dates never go back as time goes on), so the days on or before `through`, a
# prefix, are counted by the rows that start one there.
_ANALYZE = text("ANALYZE pg_temp.purchase_histories, pg_temp.purchase_totals")
PURCHASES_CTE = """
    per AS (
        SELECT d.customer_id,
               count(*) FILTER (WHERE d.day <= CAST(:through AS date) AND d.new_day) - 1 AS x,
               max(d.day) FILTER (WHERE d.day <= CAST(:through AS date)) AS last_day_through,
               min(d.day) AS first_day,
               max(d.updated_at) FILTER (WHERE d.day <= CAST(:through AS date)) AS recorded_at,
               max(d.day) AS last_day,
               count(*) AS purchases,
               sum(d.amount) AS amount
          FROM (
            SELECT i.customer_id, t.day, i.updated_at, i.amount,
                   t.day IS DISTINCT FROM lag(t.day) OVER (
                       PARTITION BY i.customer_id ORDER BY i.occurred_at) AS new_day
              FROM interactions i
             CROSS JOIN LATERAL (
                SELECT (i.occurred_at AT TIME ZONE CAST(:tz AS text))::date AS day) AS t
             WHERE i.kind = 'purchase'
               -- Live customers': every interaction has its customer, so this leaves out the
               -- few deleted ones (ix_customers_deleted) instead of hashing every customer.
               AND NOT EXISTS (SELECT FROM customers c
                                WHERE c.id = i.customer_id AND c.deleted_at IS NOT NULL)
               /*purchase_scope*/
          ) AS d
         GROUP BY d.customer_id
    )"""
# Both fills below end so: every buyer's totals, and the history of each with a purchase on or
# before `through` (min(day) is then the history's first day).
_FILL_TAIL = """,
    totals AS (
        INSERT INTO purchase_totals (customer_id, last_day, purchases, amount)
        SELECT customer_id, last_day, purchases, amount FROM per
    )
    INSERT INTO purchase_histories (customer_id, x, t_x, t, purchase_recorded_at)
    SELECT customer_id, x, last_day_through - first_day,
           CAST(:through AS date) - first_day, recorded_at
      FROM per
     WHERE x >= 0
    """
_FILL_HISTORIES = text(
    """
    WITH"""
    + PURCHASES_CTE.replace("/*purchase_scope*/", "")
    + _FILL_TAIL
)


async def local_today(session: AsyncSession, tz: str) -> date:
    value = await session.scalar(
        text("SELECT (now() AT TIME ZONE CAST(:tz AS text))::date"), {"tz": tz}
    )
    assert isinstance(value, date)
    return value


async def build_histories(session: AsyncSession, *, through: date, tz: str) -> None:
    """Summarise every live customer's purchases up to and including day `through` (and,
    in `pg_temp.purchase_totals`, all their purchases for the sweep's RFM; both dropped at
    commit)."""
    await session.execute(_DROP_HISTORIES)
    await session.execute(_DROP_TOTALS)
    await session.execute(_CREATE_HISTORIES)
    await session.execute(_CREATE_TOTALS)
    await session.execute(_FILL_HISTORIES, {"through": through, "tz": tz})
    # Row counts and value spreads for the sweep's plan (a temp table has no statistics, and
    # the planner would guess a few hundred buyers).
    await session.execute(_ANALYZE)


# The sweep's: the same two tables from the facts it keeps between runs (sweep_facts, refreshed
# just before by app.segments.repository.refresh_facts as of the same `through`), instead of a
# scan of every purchase.
_FILL_FROM_FACTS = text(
    """
    WITH per AS ("""  # noqa: S608 (constant SQL fragments, no input)
    + """
        SELECT f.customer_id, f.x, f.first_day, f.last_day_through,
               f.recorded_through AS recorded_at, f.last_day, f.deals AS purchases, f.amount
          FROM sweep_facts f
         WHERE f.last_day IS NOT NULL
           AND NOT EXISTS (SELECT FROM customers c
                            WHERE c.id = f.customer_id AND c.deleted_at IS NOT NULL)
    )"""
    + _FILL_TAIL
)


async def build_histories_from_facts(session: AsyncSession, *, through: date) -> None:
    """As `build_histories`, from the sweep's stored facts (computed through `through`)."""
    await session.execute(_DROP_HISTORIES)
    await session.execute(_DROP_TOTALS)
    await session.execute(_CREATE_HISTORIES)
    await session.execute(_CREATE_TOTALS)
    await session.execute(_FILL_FROM_FACTS, {"through": through})
    await session.execute(_ANALYZE)


async def history_groups(session: AsyncSession) -> dict[str, list[int]]:
    """The distinct (x, t_x, T) histories and how many customers share each."""
    # As four arrays in one row (aligned: one aggregation over the sorted groups): ~10^5
    # groups at 1M customers, which as rows cost more to fetch and unpack than to group.
    row = (
        await session.execute(
            text(
                "SELECT coalesce(array_agg(x), '{}'), coalesce(array_agg(t_x), '{}'),"
                " coalesce(array_agg(t), '{}'), coalesce(array_agg(n), '{}')"
                " FROM (SELECT x, t_x, t, CAST(count(*) AS int) AS n FROM purchase_histories"
                " GROUP BY x, t_x, t ORDER BY x, t_x, t) AS g"
            )
        )
    ).one()
    return {"x": list(row[0]), "t_x": list(row[1]), "t": list(row[2]), "n": list(row[3])}


async def customer_histories(session: AsyncSession) -> list[dict[str, Any]]:
    """Every customer's history with its code (for checks against published data)."""
    rows = await session.execute(
        text(
            "SELECT c.code, h.x, h.t_x, h.t FROM purchase_histories h "
            "JOIN customers c ON c.id = h.customer_id ORDER BY c.code"
        )
    )
    return [dict(r) for r in rows.mappings().all()]


# Only the rows whose prediction differs meet customers again, straight by TID (`ch` is
# materialised first: the planner cannot estimate how few differ, and would otherwise join a
# second scan of every customer). A row updated since `ch`'s snapshot is re-checked on its new
# version by the UPDATE (same TID required, so it is left for the next sweep).
_APPLY = text(
    """
    WITH pred AS (
        SELECT *
          FROM unnest(CAST(:x AS int[]), CAST(:t_x AS int[]), CAST(:t AS int[]),
                      CAST(:p_alive AS float8[]), CAST(:expected AS float8[]))
               AS u (x, t_x, t, p_alive, expected)
    ),
    ch AS MATERIALIZED (
        SELECT c.ctid AS row_ctid, c.id, pred.p_alive, pred.expected
          FROM customers c
          LEFT JOIN purchase_histories h ON h.customer_id = c.id
          LEFT JOIN pred ON pred.x = h.x AND pred.t_x = h.t_x AND pred.t = h.t
         WHERE c.deleted_at IS NULL
           -- Also restamp a prediction that did not change but now accounts for a purchase
           -- recorded after it (a second purchase on the same day): the value-tier rule
           -- trusts a prediction only when it is newer than every purchase record.
           AND ((c.p_alive, c.expected_purchases_90d) IS DISTINCT FROM (pred.p_alive, pred.expected)
                OR c.prediction_at < h.purchase_recorded_at)
    ),
    upd AS (
        UPDATE customers c
           SET p_alive = ch.p_alive,
               expected_purchases_90d = ch.expected,
               prediction_at = CASE WHEN ch.p_alive IS NULL THEN NULL ELSE now() END
          FROM ch
         WHERE c.ctid = ANY (ARRAY(SELECT ch.row_ctid FROM ch))
           AND c.ctid = ch.row_ctid
           AND c.id = ch.id
        RETURNING 1
    )
    SELECT count(*) FROM upd
    """
)


async def apply_predictions(
    session: AsyncSession,
    groups: dict[str, list[int]],
    p_alive: list[float | None],
    expected: list[float | None],
) -> int:
    """Store each live customer's prediction (NULL without a history or a model); returns how
    many customers changed."""
    changed = await session.scalar(
        _APPLY,
        {
            "x": groups["x"],
            "t_x": groups["t_x"],
            "t": groups["t"],
            "p_alive": p_alive,
            "expected": expected,
        },
    )
    return int(changed or 0)


async def latest_fit(session: AsyncSession, *, converged_only: bool = True) -> PredictionFit | None:
    stmt = select(PredictionFit).order_by(PredictionFit.id.desc()).limit(1)
    if converged_only:
        stmt = stmt.where(PredictionFit.converged)
    return await session.scalar(stmt)


async def record_fit(session: AsyncSession, values: dict[str, Any]) -> PredictionFit:
    fit = PredictionFit(**values)
    session.add(fit)
    await session.flush()
    return fit
