"""The churn model in the sweep: refit, stored per customer, shown with the segments, filtered
and sorted in the customer list, and feeding the value tier when its rule is on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from app.prediction import bgnbd
from tests.factories import (
    TestUser,
    add_interaction,
    make_user,
    run_sweep,
    seed_customer,
)

TRUTH = bgnbd.Params(r=0.8, alpha=40.0, a=0.6, b=2.5)


def purchase_days(n: int, seed: int = 9) -> list[list[int]]:
    """Each customer's purchase days, as days ago (simulated from TRUTH over up to 400 days)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        span = int(rng.integers(30, 400))
        rate = rng.gamma(TRUTH.r, 1 / TRUTH.alpha)
        drop = rng.beta(TRUTH.a, TRUTH.b)
        day, days = 0.0, [0]
        while True:
            day += rng.exponential(1 / rate)
            if day > span:
                break
            days.append(int(day))
            if rng.random() < drop:
                break
        out.append(sorted({span - d for d in days}, reverse=True))
    return out


def history(days_ago: list[int]) -> tuple[float, float, float]:
    """(x, t_x, T) in days, computed here independently of the SQL."""
    first, last = max(days_ago), min(days_ago)
    return len(set(days_ago)) - 1, first - last, first


async def seed_base(engine: AsyncEngine, owner: int, n: int = 120) -> dict[str, list[int]]:
    """n buyers with simulated histories (purchases at now - k days) and one non-buyer."""
    histories = purchase_days(n)
    customer_ids, days = [], []
    async with engine.begin() as conn:
        for i, ago in enumerate(histories):
            customer_id = await conn.scalar(
                text(
                    "INSERT INTO customers (code, name, owner_id, created_at) VALUES "
                    "(:code, :name, :owner, now() - interval '500 days') RETURNING id"
                ),
                {"code": f"C20250101{i:04d}", "name": f"买家{i}", "owner": owner},
            )
            for d in ago:
                customer_ids.append(customer_id)
                days.append(d)
        await conn.execute(
            text(
                "INSERT INTO interactions (customer_id, occurred_at, channel, kind, direction, "
                "amount) SELECT cid, now() - make_interval(days => d), 'store', 'purchase', "
                "'inbound', 100 FROM unnest(CAST(:cids AS bigint[]), CAST(:days AS int[])) "
                "AS t (cid, d)"
            ),
            {"cids": customer_ids, "days": days},
        )
    return {f"C20250101{i:04d}": ago for i, ago in enumerate(histories)}


async def stored(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT code, p_alive, expected_purchases_90d, prediction_at, value_tier "
                "FROM customers"
            )
        )
        return {r["code"]: dict(r) for r in rows.mappings()}


async def latest_fit(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (
            (await conn.execute(text("SELECT * FROM prediction_fits ORDER BY id DESC LIMIT 1")))
            .mappings()
            .one()
        )
        return dict(row)


@pytest.fixture
async def manager(engine: AsyncEngine) -> TestUser:
    return await make_user(engine, role=Role.manager)


async def test_sweep_fits_and_stores_predictions(engine: AsyncEngine, manager: TestUser):
    base = await seed_base(engine, manager.id)
    idle = await seed_customer(engine, owner_id=manager.id)
    result = await run_sweep(engine)
    assert result is not None
    assert result["prediction"]["refitted"] is True
    assert result["prediction"]["customers_changed"] == len(base)
    fit = await latest_fit(engine)
    assert fit["converged"] and fit["customers"] == len(base) and fit["time_unit"] == "day"
    params = bgnbd.Params(r=fit["r"], alpha=fit["alpha"], a=fit["a"], b=fit["b"])

    rows = await stored(engine)
    for code, ago in base.items():
        x, t_x, T = history(ago)
        row = rows[code]
        # Stored to two decimals.
        assert row["p_alive"] == round(float(bgnbd.p_alive(params, x, t_x, T)), 2)
        assert row["expected_purchases_90d"] == round(
            float(bgnbd.expected_purchases(params, 90, x, t_x, T)), 2
        )
        assert row["prediction_at"] is not None
    assert rows[idle.code]["p_alive"] is None
    assert rows[idle.code]["expected_purchases_90d"] is None

    # A scheduled sweep within the refit interval keeps the model and changes nothing.
    again = await run_sweep(engine, cause="sweep")
    assert again is not None
    assert again["prediction"]["refitted"] is False
    assert again["prediction"]["customers_changed"] == 0
    assert again["prediction"]["model"]["fitted_at"] == fit["fitted_at"]


async def test_too_little_history_fits_nothing(engine: AsyncEngine, manager: TestUser):
    customer = await seed_customer(engine, owner_id=manager.id)
    await add_interaction(engine, customer, days_ago=3, kind="purchase", amount="10")
    result = await run_sweep(engine)
    assert result is not None
    assert result["prediction"]["refitted"] is False
    assert result["prediction"]["model"] is None
    assert result["prediction"]["customers_changed"] == 0
    assert (await stored(engine))[customer.code]["p_alive"] is None


async def test_prediction_shown_with_the_segments(
    client: httpx.AsyncClient, engine: AsyncEngine, manager: TestUser
):
    base = await seed_base(engine, manager.id)
    idle = await seed_customer(engine, owner_id=manager.id)
    await run_sweep(engine)
    rows = await stored(engine)
    code = next(iter(base))
    r = await client.get(f"/api/v1/customers/{code}/segments", headers=manager.headers)
    assert r.status_code == 200, r.text
    prediction = r.json()["prediction"]
    assert prediction["p_alive"] == rows[code]["p_alive"]
    assert prediction["expected_purchases_90d"] == rows[code]["expected_purchases_90d"]
    assert prediction["horizon_days"] == 90
    assert datetime.fromisoformat(prediction["predicted_at"]) == rows[code]["prediction_at"]
    r = await client.get(f"/api/v1/customers/{idle.code}/segments", headers=manager.headers)
    assert r.json()["prediction"]["p_alive"] is None


async def _all_codes(
    client: httpx.AsyncClient, user: TestUser, params: dict[str, Any]
) -> list[str]:
    codes: list[str] = []
    cursor = None
    while True:
        page = await client.get(
            "/api/v1/customers",
            params={**params, **({"cursor": cursor} if cursor else {})},
            headers=user.headers,
        )
        assert page.status_code == 200, page.text
        codes.extend(item["code"] for item in page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return codes


async def test_list_filters_and_sorts_by_prediction(
    client: httpx.AsyncClient, engine: AsyncEngine, manager: TestUser
):
    await seed_base(engine, manager.id)
    idle = await seed_customer(engine, owner_id=manager.id)
    await run_sweep(engine)
    rows = await stored(engine)

    def where(test: Any) -> set[str]:
        return {code for code, row in rows.items() if test(row)}

    at_risk = await _all_codes(client, manager, {"p_alive_max": 0.5, "limit": 200})
    assert set(at_risk) == where(lambda r: r["p_alive"] is not None and r["p_alive"] <= 0.5)
    assert at_risk  # the simulated base has some
    likely = await _all_codes(
        client, manager, {"p_alive_min": 0.8, "expected_purchases_min": 0.5, "limit": 200}
    )
    assert set(likely) == where(
        lambda r: (
            r["p_alive"] is not None and r["p_alive"] >= 0.8 and r["expected_purchases_90d"] >= 0.5
        )
    )
    few = await _all_codes(client, manager, {"expected_purchases_max": 0.1, "limit": 200})
    assert set(few) == where(
        lambda r: r["expected_purchases_90d"] is not None and r["expected_purchases_90d"] <= 0.1
    )

    # Keyset pages in probability order; customers without a prediction come last.
    ordered = await _all_codes(client, manager, {"sort": "p_alive", "limit": 7})
    expected = sorted(
        (code for code in rows if rows[code]["p_alive"] is not None),
        key=lambda code: rows[code]["p_alive"],
    )
    assert [rows[c]["p_alive"] for c in ordered[: len(expected)]] == [
        rows[c]["p_alive"] for c in expected
    ]
    assert ordered[-1] == idle.code and len(ordered) == len(rows)
    descending = await _all_codes(client, manager, {"sort": "-expected_purchases_90d", "limit": 9})
    values = [rows[c]["expected_purchases_90d"] for c in descending if c != idle.code]
    assert values == sorted(values, reverse=True)

    bad = await client.get(
        "/api/v1/customers", params={"p_alive_min": 1.5}, headers=manager.headers
    )
    assert bad.status_code == 422


async def test_p_alive_threshold_feeds_the_value_tier(
    client: httpx.AsyncClient, engine: AsyncEngine, manager: TestUser
):
    await seed_base(engine, manager.id)
    # Bought on eight days a year ago, then stopped; still talks to us (no other churn rule).
    quitter = await seed_customer(engine, owner_id=manager.id, created_days_ago=420)
    for days_ago in (400, 396, 392, 388, 384, 380, 376, 372):
        await add_interaction(engine, quitter, days_ago=days_ago, kind="purchase", amount="500")
    await add_interaction(engine, quitter, days_ago=5)
    await run_sweep(engine)
    before = (await stored(engine))[quitter.code]
    assert before["p_alive"] < 0.05
    assert before["value_tier"] == "high_value"  # eight deals

    rules = (await client.get("/api/v1/segments/rules", headers=manager.headers)).json()["rules"]
    assert rules["value_tier"]["churn_risk_p_alive_below"] is None
    rules["value_tier"]["churn_risk_p_alive_below"] = 0.2
    admin = await make_user(engine, role=Role.admin)
    r = await client.put("/api/v1/segments/rules", json=rules, headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["recompute"]["prediction"]["refitted"] is False

    segments = (
        await client.get(f"/api/v1/customers/{quitter.code}/segments", headers=manager.headers)
    ).json()
    assert segments["value_tier"] == "churn_risk"
    assert segments["reasons"]["value_tier"].startswith("probability alive 0.0")
    assert segments["reasons"]["value_tier"].endswith("(rule: below 0.2)")
    change = segments["changes"][0]
    assert (change["old_class"], change["new_class"], change["reason"]) == (
        "high_value",
        "churn_risk",
        "low_p_alive",
    )
    low = await _all_codes(client, manager, {"tier": "churn_risk", "p_alive_max": 0.2})
    assert quitter.code in low

    # A new deal: the stored probability predates it, so the rule waits for the next sweep
    # instead of keeping a customer who just bought at churn risk.
    r = await client.post(
        "/api/v1/interactions",
        json={
            "customer_code": quitter.code,
            "occurred_at": datetime.now(UTC).isoformat(),
            "channel": "store",
            "kind": "purchase",
            "direction": "inbound",
            "amount": "800",
        },
        headers=manager.headers,
    )
    assert r.status_code == 201, r.text
    after = await client.get(f"/api/v1/customers/{quitter.code}/segments", headers=manager.headers)
    assert after.json()["value_tier"] == "high_value"
    await run_sweep(engine)
    row = (await stored(engine))[quitter.code]
    assert row["p_alive"] > 0.2 and row["value_tier"] == "high_value"


async def test_rules_written_before_the_churn_model_still_read(
    client: httpx.AsyncClient, engine: AsyncEngine, manager: TestUser
):
    """Version 1 (from the migration) has no churn_risk_p_alive_below: the rule is off, and
    putting the same rules back stores no new version."""
    r = await client.get("/api/v1/segments/rules", headers=manager.headers)
    assert r.json()["version"] == 1
    admin = await make_user(engine, role=Role.admin)
    again = await client.put(
        "/api/v1/segments/rules", json=r.json()["rules"], headers=admin.headers
    )
    assert again.status_code == 200, again.text
    assert again.json()["version"] == 1 and again.json()["recompute"] is None


def test_simulated_histories_are_plausible():
    histories = purchase_days(120)
    assert all(min(h) >= 0 and len(h) >= 1 for h in histories)
    assert sum(len(h) > 1 for h in histories) >= 20
    assert timedelta(days=max(max(h) for h in histories)) <= timedelta(days=400)


async def test_histories_count_purchase_days_in_the_service_time_zone(
    engine: AsyncEngine, manager: TestUser
):
    """x counts days with a purchase (two on one local day are one occasion, even across UTC
    midnight), t_x and T are whole local days; the RFM totals count every purchase."""
    from app.core.config import get_settings
    from app.core.db import build_sessionmaker
    from app.prediction import repository as prediction_repo

    tz = get_settings().timezone
    buyer = await seed_customer(engine, owner_id=manager.id)
    deleted = await seed_customer(engine, owner_id=manager.id)
    # Local times (days ago, hour): day 10 twice (07:00 is 23:00 UTC the day before in
    # Asia/Shanghai), day 4 once, day 1 twice.
    times = [(10, 7), (10, 20), (4, 12), (1, 9), (1, 10)]
    async with engine.begin() as conn:
        for days, hour in times:
            for customer in (buyer, deleted):
                await conn.execute(
                    text(
                        "INSERT INTO interactions (customer_id, occurred_at, channel, kind, "
                        "direction, amount) VALUES (:c, (date_trunc('day', now() AT TIME ZONE "
                        "CAST(:tz AS text)) - make_interval(days => CAST(:d AS int)) "
                        "+ make_interval(hours => CAST(:h AS int))) "
                        "AT TIME ZONE CAST(:tz AS text), "
                        "'store', 'purchase', 'inbound', 10.5)"
                    ),
                    {"c": customer.id, "tz": tz, "d": days, "h": hour},
                )
        await conn.execute(
            text("UPDATE customers SET deleted_at = now() WHERE id = :id"), {"id": deleted.id}
        )
    async with build_sessionmaker(engine)() as session, session.begin():
        today = await prediction_repo.local_today(session, tz)
        await prediction_repo.build_histories(session, through=today, tz=tz)
        histories = await prediction_repo.customer_histories(session)
        totals = (
            await session.execute(
                text("SELECT customer_id, last_day, purchases, amount FROM purchase_totals")
            )
        ).all()
    assert [(h["code"], h["x"], h["t_x"], h["t"]) for h in histories] == [(buyer.code, 2, 9, 10)]
    assert [(t[0], (today - t[1]).days, t[2], float(t[3])) for t in totals] == [
        (buyer.id, 1, 5, 52.5)
    ]
