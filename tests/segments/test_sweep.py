"""The sweep writes only what changed: a sweep over an unchanged base touches no customer row
and logs nothing; RFM ties score as ntile() would give the tie's first row."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.db import build_sessionmaker
from app.segments import repository as repo
from app.segments import service
from tests.factories import add_interaction, customer_row, run_sweep, seed_customer


async def _versions(engine: AsyncEngine) -> dict[int, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, xmin::text FROM customers ORDER BY id"))
        return {int(r[0]): str(r[1]) for r in rows}


async def _tier_changes(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM tier_changes")) or 0)


@pytest.mark.parametrize("cause", ["sweep", "manual"])
async def test_a_second_sweep_over_an_unchanged_base_writes_nothing(
    engine: AsyncEngine, cause: str
):
    quiet = await seed_customer(engine, created_days_ago=400)
    await add_interaction(engine, quiet, days_ago=200, kind="purchase", amount="100.00")
    for i in range(8):
        buyer = await seed_customer(engine, created_days_ago=300)
        for j in range(i % 3 + 1):
            await add_interaction(
                engine, buyer, days_ago=5 + i * 7 + j, kind="purchase", amount=str(500 * (i + 1))
            )
    prospect = await seed_customer(engine, created_days_ago=2)
    await add_interaction(engine, prospect, days_ago=1)
    await run_sweep(engine, cause="sweep")
    versions, logged = await _versions(engine), await _tier_changes(engine)

    again = await run_sweep(engine, cause=cause)

    assert again is not None
    assert (again["customers_changed"], again["tier_changes"], again["rfm_changed"]) == (0, 0, 0)
    assert again["prediction"]["customers_changed"] == 0
    assert await _versions(engine) == versions  # no customer row rewritten
    assert await _tier_changes(engine) == logged


async def test_a_changed_class_is_written_and_logged_once_with_old_and_new(engine: AsyncEngine):
    customer = await seed_customer(engine, created_days_ago=400)
    await add_interaction(engine, customer, days_ago=3, kind="purchase", amount="10.00")
    bystander = await seed_customer(engine, created_days_ago=400)
    await add_interaction(engine, bystander, days_ago=4)
    await run_sweep(engine, cause="sweep")
    before = await customer_row(engine, customer)
    assert before["activity"] == "active"
    bystander_version = (await _versions(engine))[bystander.id]
    async with engine.begin() as conn:  # a wrong stored class, as the benchmark's setup does
        await conn.execute(
            text("UPDATE customers SET activity = 'lost' WHERE id = :id"), {"id": customer.id}
        )

    result = await run_sweep(engine, cause="sweep")

    assert result is not None and result["customers_changed"] == 1
    assert result["tier_changes"] == 1 and result["rfm_changed"] == 0
    assert (await customer_row(engine, customer))["activity"] == "active"
    assert (await _versions(engine))[bystander.id] == bystander_version
    async with engine.connect() as conn:
        change = (
            await conn.execute(
                text(
                    "SELECT dimension, old_class, new_class, reason, cause FROM tier_changes "
                    "WHERE customer_id = :id ORDER BY id DESC LIMIT 1"
                ),
                {"id": customer.id},
            )
        ).one()
    assert tuple(change) == ("activity", "lost", "active", "recent_interaction", "sweep")


# The definition the single-sort scoring replaces: ntile(5), ties to their lowest tile.
REFERENCE = """
SELECT customer_id,
       min(r_tile) OVER (PARTITION BY last_day) AS r,
       min(f_tile) OVER (PARTITION BY purchases) AS f,
       min(m_tile) OVER (PARTITION BY amount) AS m
  FROM (
    SELECT customer_id, last_day, purchases, amount,
           ntile(5) OVER (ORDER BY last_day) AS r_tile,
           ntile(5) OVER (ORDER BY purchases) AS f_tile,
           ntile(5) OVER (ORDER BY amount) AS m_tile
      FROM pg_temp.purchase_totals
  ) AS t
"""


@pytest.mark.parametrize("buyers", [1, 2, 4, 5, 6, 9, 10, 11, 13, 14, 24, 25, 26, 101, 1003])
async def test_rfm_scores_equal_ntile_with_ties_at_their_lowest_tile(
    engine: AsyncEngine, buyers: int
):
    rng = random.Random(buyers)
    rows = [
        {
            "id": i + 1,
            "day": rng.randrange(1, max(2, buyers // 3)),
            "n": rng.randrange(1, 6),
            # Some buyers' purchases all lack an amount: a NULL sum sorts last.
            "amount": None if rng.random() < 0.1 else rng.randrange(1, max(2, buyers // 2)),
        }
        for i in range(buyers)
    ]
    async with build_sessionmaker(engine)() as session, session.begin():
        await session.execute(
            text(
                "CREATE TEMP TABLE purchase_totals (customer_id bigint PRIMARY KEY, "
                "last_day date NOT NULL, purchases bigint NOT NULL, amount numeric) "
                "ON COMMIT DROP"
            )
        )
        await session.execute(
            text(
                "INSERT INTO purchase_totals VALUES "
                "(:id, DATE '2026-01-01' + CAST(:day AS int), :n, CAST(:amount AS numeric))"
            ),
            rows,
        )
        got = {r[0]: tuple(r[1:4]) for r in await session.execute(repo.RFM_SQL)}
        want = {r[0]: tuple(r[1:]) for r in await session.execute(text(REFERENCE))}
    assert got == want
    assert len(got) == buyers


async def _customer_row_updates(session: AsyncSession) -> tuple[int, int]:
    """Row updates and HOT updates of customers this backend has counted and not yet reported
    to the statistics (none is reported inside a transaction block: the difference of two
    readings in one transaction is its own count)."""
    row = (
        await session.execute(
            text(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                "WHERE relid = 'customers'::regclass"
            )
        )
    ).one()
    return int(row[0]), int(row[1])


async def test_a_sweep_that_changes_every_customer_touches_no_index(engine: AsyncEngine):
    """Every class wrong (as after a rule change or a long pause): the sweep's writes are all
    HOT updates, so none inserts into the customers indexes (twenty at the time of writing,
    five GIN: at 1M customers, 260 s against 34 s). Guards the customers fillfactor
    (migration 0014) and that no class column the sweep writes is indexed."""
    people = []
    for i in range(40):
        c = await seed_customer(engine, created_days_ago=300)
        await add_interaction(engine, c, days_ago=2 + i % 9, kind="purchase", amount=f"{i + 1}00")
        people.append(c)
    await run_sweep(engine, cause="sweep")
    async with engine.begin() as conn:
        wrong = await conn.execute(
            text(
                "UPDATE customers SET activity = CASE activity WHEN 'active' THEN 'dormant' "
                "ELSE 'active' END, value_tier = CASE value_tier WHEN 'normal' "
                "THEN 'potential' ELSE 'normal' END"
            )
        )
    assert wrong.rowcount == len(people)

    async with build_sessionmaker(engine)() as session, session.begin():
        before = await _customer_row_updates(session)
        result = await service.run_sweep(session, cause="sweep")
        updates, hot = (
            a - b for a, b in zip(await _customer_row_updates(session), before, strict=True)
        )

    assert result is not None and result["customers_changed"] == len(people)
    assert updates >= len(people)
    assert hot == updates
    for c in people:  # and each class is right again
        assert (await customer_row(engine, c))["activity"] == "active"
