"""The default rules of SPEC §4 at their boundaries, and the precedence between classes.

Interactions are inserted directly (backdated), then the sweep classifies the whole base.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import add_interaction, customer_row, run_sweep, seed_customer


async def _classes(engine: AsyncEngine, customer) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    row = await customer_row(engine, customer)
    return row["value_tier"], row["lifecycle"], row["activity"]


@pytest.mark.parametrize(("days", "tier"), [(89, "normal"), (91, "churn_risk")])
async def test_churn_risk_after_90_quiet_days(engine: AsyncEngine, days: int, tier: str):
    customer = await seed_customer(engine, created_days_ago=400)
    await add_interaction(engine, customer, days_ago=days)
    await run_sweep(engine)
    assert (await _classes(engine, customer))[0] == tier


@pytest.mark.parametrize(("created", "tier"), [(0, "normal"), (89, "normal"), (91, "churn_risk")])
async def test_a_customer_without_interactions_counts_from_its_creation(
    engine: AsyncEngine, created: int, tier: str
):
    customer = await seed_customer(engine, created_days_ago=created)
    await run_sweep(engine)
    value_tier, lifecycle, activity = await _classes(engine, customer)
    assert value_tier == tier
    assert lifecycle == "potential"
    assert activity == ("active" if created == 0 else "dormant" if created == 89 else "lost")


async def test_an_imported_follow_up_date_counts_as_a_touch(engine: AsyncEngine):
    recent = await seed_customer(engine, created_days_ago=1, last_follow_up_days_ago=10)
    quiet = await seed_customer(engine, created_days_ago=1, last_follow_up_days_ago=100)
    await run_sweep(engine)
    assert (await _classes(engine, recent))[0] == "normal"
    assert (await _classes(engine, quiet))[0] == "churn_risk"


async def test_an_unresolved_complaint_is_churn_risk(engine: AsyncEngine):
    customer = await seed_customer(engine, created_days_ago=30)
    complaint = await add_interaction(engine, customer, days_ago=1, kind="complaint")
    await run_sweep(engine)
    assert (await _classes(engine, customer))[0] == "churn_risk"
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE interactions SET resolved = true WHERE id = :id"), {"id": complaint}
        )
    await run_sweep(engine)
    assert (await _classes(engine, customer))[0] == "normal"


@pytest.mark.parametrize(("second", "tier"), [("39999.99", "normal"), ("40000.00", "high_value")])
async def test_high_value_from_100k_cny_in_180_days(engine: AsyncEngine, second: str, tier: str):
    """60,000 + 39,999.99 = 99,999.99 is not high value; 60,000 + 40,000 = 100,000 is."""
    customer = await seed_customer(engine, created_days_ago=400)
    await add_interaction(engine, customer, days_ago=170, kind="purchase", amount="60000.00")
    await add_interaction(engine, customer, days_ago=5, kind="purchase", amount=second)
    await run_sweep(engine)
    assert (await _classes(engine, customer))[0] == tier


async def test_purchases_older_than_180_days_do_not_count(engine: AsyncEngine):
    customer = await seed_customer(engine, created_days_ago=400)
    await add_interaction(engine, customer, days_ago=181, kind="purchase", amount="500000.00")
    await add_interaction(engine, customer, days_ago=3, kind="purchase", amount="10.00")
    await run_sweep(engine)
    assert (await _classes(engine, customer))[0] == "normal"


@pytest.mark.parametrize(("deals", "tier"), [(2, "potential"), (3, "high_value")])
async def test_high_value_from_three_deals(engine: AsyncEngine, deals: int, tier: str):
    customer = await seed_customer(engine, created_days_ago=400)
    for i in range(deals):
        await add_interaction(engine, customer, days_ago=10 + i, kind="purchase", amount="100.00")
    await run_sweep(engine)
    # Two recent deals are also two recent interactions: potential; three outrank that.
    assert (await _classes(engine, customer))[0] == tier


@pytest.mark.parametrize(("count", "tier"), [(1, "normal"), (2, "potential")])
async def test_potential_from_two_interactions_in_90_days(
    engine: AsyncEngine, count: int, tier: str
):
    customer = await seed_customer(engine, created_days_ago=400)
    await add_interaction(engine, customer, days_ago=95)  # outside the window
    for i in range(count):
        await add_interaction(engine, customer, days_ago=80 + i)
    await run_sweep(engine)
    assert (await _classes(engine, customer))[0] == tier


async def test_potential_from_an_open_need_without_a_deal(engine: AsyncEngine):
    needy = await seed_customer(engine, core_needs="需要一套CRM系统")
    bought = await seed_customer(engine, core_needs="需要一套CRM系统", created_days_ago=30)
    await add_interaction(engine, bought, days_ago=1, kind="purchase", amount="10.00")
    await run_sweep(engine)
    assert (await _classes(engine, needy))[0] == "potential"
    assert (await _classes(engine, bought))[0] == "normal"


async def test_precedence_churn_risk_over_high_value_over_potential(engine: AsyncEngine):
    quiet_big = await seed_customer(engine, created_days_ago=400)
    for i in range(3):
        await add_interaction(engine, quiet_big, days_ago=95 + i, kind="purchase", amount="1.00")
    complaining_big = await seed_customer(engine, created_days_ago=400)
    await add_interaction(engine, complaining_big, days_ago=3, kind="purchase", amount="200000")
    await add_interaction(engine, complaining_big, days_ago=2, kind="complaint")
    needy_big = await seed_customer(engine, core_needs="扩容", created_days_ago=10)
    await add_interaction(engine, needy_big, days_ago=2, kind="purchase", amount="150000")
    await add_interaction(engine, needy_big, days_ago=1)
    await run_sweep(engine)
    assert (await _classes(engine, quiet_big))[0] == "churn_risk"
    assert (await _classes(engine, complaining_big))[0] == "churn_risk"
    assert (await _classes(engine, needy_big))[0] == "high_value"


@pytest.mark.parametrize(
    ("purchases", "lifecycle"), [(0, "potential"), (1, "new"), (2, "existing"), (5, "existing")]
)
async def test_lifecycle_by_purchase_count(engine: AsyncEngine, purchases: int, lifecycle: str):
    customer = await seed_customer(engine, created_days_ago=400)
    await add_interaction(engine, customer, days_ago=1)
    for i in range(purchases):
        await add_interaction(engine, customer, days_ago=2 + i, kind="purchase", amount="1.00")
    await run_sweep(engine)
    assert (await _classes(engine, customer))[1] == lifecycle


@pytest.mark.parametrize(("days", "lifecycle"), [(179, "new"), (181, "churned")])
async def test_churned_after_180_quiet_days_following_a_purchase(
    engine: AsyncEngine, days: int, lifecycle: str
):
    customer = await seed_customer(engine, created_days_ago=400)
    await add_interaction(engine, customer, days_ago=days, kind="purchase", amount="1.00")
    quiet_prospect = await seed_customer(engine, created_days_ago=400)
    await add_interaction(engine, quiet_prospect, days_ago=days)
    await run_sweep(engine)
    assert (await _classes(engine, customer))[1] == lifecycle
    assert (await _classes(engine, quiet_prospect))[1] == "potential"  # never bought


async def test_a_lifecycle_given_on_import_is_the_baseline(engine: AsyncEngine):
    existing = await seed_customer(engine, lifecycle="existing")
    churned = await seed_customer(engine, lifecycle="churned")
    old_existing = await seed_customer(engine, lifecycle="existing", created_days_ago=200)
    await run_sweep(engine)
    assert (await _classes(engine, existing))[1] == "existing"
    assert (await _classes(engine, churned))[1] == "churned"
    assert (await _classes(engine, old_existing))[1] == "churned"  # a rule moved it
    # One recorded purchase does not demote an existing customer to "new".
    await add_interaction(engine, existing, days_ago=1, kind="purchase", amount="5.00")
    await run_sweep(engine)
    assert (await _classes(engine, existing))[1] == "existing"


@pytest.mark.parametrize(
    ("days", "activity"),
    [(29, "active"), (31, "dormant"), (89, "dormant"), (91, "lost")],
)
async def test_activity_boundaries(engine: AsyncEngine, days: int, activity: str):
    customer = await seed_customer(engine, created_days_ago=400)
    await add_interaction(engine, customer, days_ago=days)
    await run_sweep(engine)
    assert (await _classes(engine, customer))[2] == activity


async def test_every_customer_is_in_exactly_one_class_per_dimension(engine: AsyncEngine):
    for i in range(12):
        customer = await seed_customer(engine, created_days_ago=i * 20)
        for j in range(i % 4):
            await add_interaction(engine, customer, days_ago=j * 40, kind="purchase", amount="9")
    await run_sweep(engine)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT value_tier, lifecycle, activity, rfm_segment FROM customers")
            )
        ).all()
    assert len(rows) == 12
    assert all(all(value is not None for value in row) for row in rows)


async def test_rfm_quintiles_and_segments(engine: AsyncEngine):
    buyers = []
    for i in range(10):
        customer = await seed_customer(engine, created_days_ago=400)
        # i = 9 bought most recently, most often and the most.
        for j in range(i + 1):
            await add_interaction(
                engine,
                customer,
                days_ago=100 - i * 10 + j * 0.01,
                kind="purchase",
                amount=str(1000 * (i + 1)),
            )
        buyers.append(customer)
    prospect = await seed_customer(engine)
    twin_a = await seed_customer(engine, created_days_ago=400)
    twin_b = await seed_customer(engine, created_days_ago=400)
    for twin in (twin_a, twin_b):
        await add_interaction(engine, twin, days_ago=55, kind="purchase", amount="5500")
    await run_sweep(engine)

    best = await customer_row(engine, buyers[-1])
    worst = await customer_row(engine, buyers[0])
    assert (best["rfm_r"], best["rfm_f"], best["rfm_m"]) == (5, 5, 5)
    assert best["rfm_segment"] == "champions"
    assert (worst["rfm_r"], worst["rfm_f"], worst["rfm_m"]) == (1, 1, 1)
    assert worst["rfm_segment"] == "hibernating"
    none = await customer_row(engine, prospect)
    assert none["rfm_segment"] == "no_purchase" and none["rfm_r"] is None
    # Equal behaviour, equal scores, whatever tile ntile() put each one in.
    a, b = await customer_row(engine, twin_a), await customer_row(engine, twin_b)
    assert (a["rfm_r"], a["rfm_f"], a["rfm_m"]) == (b["rfm_r"], b["rfm_f"], b["rfm_m"])
    async with engine.connect() as conn:
        scores = (
            await conn.execute(text("SELECT DISTINCT rfm_r FROM customers WHERE rfm_r IS NOT NULL"))
        ).scalars()
        assert set(scores) == {1, 2, 3, 4, 5}
