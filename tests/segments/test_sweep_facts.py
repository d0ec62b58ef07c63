"""The sweep keeps each customer's interaction facts between runs and recomputes only the stale
ones: those whose interactions were written since (however written), and those with an
interaction that a window's moving edge crossed. Whatever happened in between, the stored facts
a sweep leaves equal a computation from scratch, and so do the classes it stores."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import build_sessionmaker
from app.prediction import service as prediction_service
from app.segments import repository as repo
from tests.factories import TestCustomer, add_interaction, customer_row, run_sweep, seed_customer

TZ = "Asia/Shanghai"


def _fresh_facts_sql() -> str:
    """The stored facts' own statement, as a SELECT of every customer's facts right now."""
    sql = repo._facts_sql("", clear_pending=False)
    return sql[: sql.index("INSERT INTO sweep_facts")] + sql[sql.index("SELECT a.customer_id") :]


async def _facts(
    engine: AsyncEngine,
) -> tuple[dict[int, tuple[Any, ...]], dict[int, tuple[Any, ...]]]:
    """(stored, computed from scratch now), by customer id."""
    async with engine.connect() as conn:
        stored = {
            r[0]: tuple(r[1:])
            for r in await conn.execute(text(f"SELECT {repo._FACTS_COLUMNS} FROM sweep_facts"))
        }
        today = await conn.scalar(text(f"SELECT (now() AT TIME ZONE '{TZ}')::date"))
        fresh = {
            r[0]: tuple(r[1:])
            for r in await conn.execute(text(_fresh_facts_sql()), {"tz": TZ, "through": today})
        }
    return stored, fresh


async def _base(engine: AsyncEngine) -> list[TestCustomer]:
    people = []
    for i in range(6):
        c = await seed_customer(engine, created_days_ago=400)
        # None where a test below moves a window's edge (90-100, 180-190 days back; purchases
        # in the last 10 days).
        await add_interaction(engine, c, days_ago=3 + i * 25)
        await add_interaction(engine, c, days_ago=12 + i * 33, kind="purchase", amount=f"{i}00.00")
        if i % 2:
            await add_interaction(engine, c, days_ago=20 + i, kind="purchase", amount="50.00")
        if i == 4:
            await add_interaction(engine, c, days_ago=2, kind="complaint")
        people.append(c)
    people.append(await seed_customer(engine, created_days_ago=5))  # no interaction at all
    return people


async def _exec(engine: AsyncEngine, sql: str, **params: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(sql), params)


async def _classes_are_live(engine: AsyncEngine, people: list[TestCustomer]) -> None:
    async with build_sessionmaker(engine)() as session:
        for c in people:
            live = await repo.facts(session, c.id, tz=TZ)
            stored = await customer_row(engine, c)
            assert live is not None
            assert (stored["value_tier"], stored["lifecycle"], stored["activity"]) == (
                live["tier"],
                live["lifecycle"],
                live["activity"],
            ), c


async def test_the_first_sweep_computes_every_customers_facts_and_the_next_none(
    engine: AsyncEngine,
):
    people = await _base(engine)

    first = await run_sweep(engine, cause="sweep")
    second = await run_sweep(engine, cause="sweep")

    assert first is not None and first["facts"] == {"facts": "all"}
    assert second is not None and second["facts"] == {"facts": "stale", "stale": 0}
    stored, fresh = await _facts(engine)
    assert stored == fresh
    assert len(stored) == 6  # one row a customer with interactions
    await _classes_are_live(engine, people)


async def test_writes_of_any_kind_between_sweeps_are_picked_up(engine: AsyncEngine):
    people = await _base(engine)
    await run_sweep(engine, cause="sweep")
    a, b, c, d, e, _, new = people
    # New interactions (one customer's first), an edit, a deletion, a move to another
    # customer: written as an import or SQL by hand would, with no recompute.
    await add_interaction(engine, a, days_ago=1, kind="purchase", amount="9000.00")
    await add_interaction(engine, new, days_ago=1)
    await _exec(
        engine,
        "UPDATE interactions SET amount = 777, occurred_at = now() - interval '1 day' "
        "WHERE customer_id = :id AND kind = 'purchase'",
        id=b.id,
    )
    await _exec(engine, "DELETE FROM interactions WHERE customer_id = :id", id=c.id)
    await _exec(
        engine,
        "UPDATE interactions SET customer_id = :to WHERE customer_id = :id AND kind = 'complaint'",
        id=e.id,
        to=d.id,
    )

    result = await run_sweep(engine, cause="sweep")

    assert result is not None
    assert result["facts"] == {"facts": "stale", "stale": 6}  # a, b, c, d, e and new
    stored, fresh = await _facts(engine)
    assert stored == fresh
    assert c.id not in stored and new.id in stored
    await _classes_are_live(engine, people)


@pytest.mark.parametrize("edge", ["pot_since", "hv_since", "through"])
async def test_an_interaction_a_window_edge_passed_is_recomputed_alone(
    engine: AsyncEngine, edge: str
):
    """Time moving on, simulated: the last sweep's bound is set ten days back, with the facts
    that sweep would have stored then (an interaction 95 days old now was 85 then, in the
    90-day window; a purchase 185 days old now was in the 180-day one). For `through`, a
    purchase is moved (with no write mark) onto a day after the old bound. Only that customer
    is recomputed, and its facts come out right."""
    people = await _base(engine)
    moved = people[5]
    if edge == "pot_since":
        await add_interaction(engine, moved, days_ago=95)
    elif edge == "hv_since":
        await add_interaction(engine, moved, days_ago=185, kind="purchase", amount="1000.00")
    await run_sweep(engine, cause="sweep")
    back = "CAST(:d AS integer)" if edge == "through" else "make_interval(days => :d)"
    await _exec(engine, f"UPDATE sweep_facts_state SET {edge} = {edge} - {back}", d=10)
    if edge == "pot_since":
        await _exec(
            engine,
            "UPDATE sweep_facts SET recent = recent + 1 WHERE customer_id = :id",
            id=moved.id,
        )
    elif edge == "hv_since":
        await _exec(
            engine,
            "UPDATE sweep_facts SET hv_sum = hv_sum + 1000 WHERE customer_id = :id",
            id=moved.id,
        )
    else:
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(
                text(
                    "UPDATE interactions SET occurred_at = now() - interval '1 day' "
                    "WHERE id = (SELECT min(id) FROM interactions "
                    "            WHERE customer_id = :id AND kind = 'purchase')"
                ),
                {"id": moved.id},
            )
    stored, fresh = await _facts(engine)
    assert stored[moved.id] != fresh[moved.id]  # stale until the sweep
    assert {k: v for k, v in stored.items() if k != moved.id} == {
        k: v for k, v in fresh.items() if k != moved.id
    }

    result = await run_sweep(engine, cause="sweep")

    assert result is not None and result["facts"] == {"facts": "stale", "stale": 1}
    stored, fresh = await _facts(engine)
    assert stored == fresh


async def test_a_write_during_a_sweep_is_left_to_the_next_one(engine: AsyncEngine):
    people = await _base(engine)
    await run_sweep(engine, cause="sweep")
    late = people[0]
    maker = build_sessionmaker(engine)
    async with maker() as session, session.begin():
        await repo.sweep_settings(session)
        assert (await repo.refresh_facts(session, tz=TZ))["stale"] == 0
        # Committed after the refresh read the marks, before the classes are computed.
        await add_interaction(engine, late, days_ago=0.5, kind="purchase", amount="5.00")
        await _exec(
            engine, "UPDATE customers SET value_tier = 'churn_risk' WHERE id = :id", id=late.id
        )
        prediction = await prediction_service.prepare(
            session, cause="sweep", tz=TZ, from_facts=True
        )
        p = prediction.pop("predictions")
        await repo.sweep_classes(
            session, cause="sweep", tz=TZ, predictions=p, erasure_cutoff=await repo.clock(session)
        )
    # The sweep did not write the customer from facts that lack the purchase.
    assert (await customer_row(engine, late))["value_tier"] == "churn_risk"

    result = await run_sweep(engine, cause="sweep")

    assert result is not None and result["facts"] == {"facts": "stale", "stale": 1}
    stored, fresh = await _facts(engine)
    assert stored == fresh
    await _classes_are_live(engine, people)


async def test_truncating_the_interactions_makes_the_next_sweep_start_over(engine: AsyncEngine):
    await _base(engine)
    await run_sweep(engine, cause="sweep")
    await _exec(engine, "TRUNCATE interactions CASCADE")

    result = await run_sweep(engine, cause="sweep")

    assert result is not None and result["facts"] == {"facts": "all"}
    stored, fresh = await _facts(engine)
    assert stored == fresh == {}
