"""Segmentation through the API: recompute on write, the sweep, rules, summary, the lock."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from app.cli import _recompute
from app.core.db import build_sessionmaker
from app.segments import repository as segment_repo
from app.segments import service
from app.segments.rules import DEFAULT_RULES
from app.segments.scheduler import sweep_once
from tests.factories import (
    add_interaction,
    customer_row,
    make_user,
    run_sweep,
    seed_customer,
)

API = "/api/v1"


def _minutes_ago(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


async def _changes(engine: AsyncEngine, customer_id: int) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT dimension, old_class, new_class, reason, cause FROM tier_changes "
                "WHERE customer_id = :id ORDER BY id"
            ),
            {"id": customer_id},
        )
        return [dict(r) for r in rows.mappings()]


async def test_a_write_recomputes_the_customer_before_the_response(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    rep = await make_user(engine)
    customer = await seed_customer(engine, owner_id=rep.id)
    r = await client.post(
        f"{API}/interactions",
        json={
            "customer_code": customer.code,
            "occurred_at": _minutes_ago(30),
            "channel": "visit",
            "kind": "purchase",
            "direction": "outbound",
            "amount": "100000.00",
            "products": ["CRM 企业版"],
        },
        headers=rep.headers,
    )
    assert r.status_code == 201, r.text
    got = (await client.get(f"{API}/customers/{customer.code}", headers=rep.headers)).json()
    assert got["value_tier"] == "high_value"
    assert got["lifecycle"] == "new"
    assert got["activity"] == "active"
    assert got["last_follow_up_at"] is not None
    shanghai = (datetime.now(UTC) - timedelta(minutes=30)).astimezone(ZoneInfo("Asia/Shanghai"))
    assert got["last_cooperation_date"] == shanghai.date().isoformat()
    changes = await _changes(engine, customer.id)
    assert {
        "dimension": "value_tier",
        "old_class": "normal",
        "new_class": "high_value",
        "reason": "purchase_amount",
        "cause": "interaction",
    } in changes
    lifecycle = [c for c in changes if c["dimension"] == "lifecycle"]
    assert [(c["old_class"], c["new_class"], c["reason"]) for c in lifecycle] == [
        ("potential", "new", "one_purchase")
    ]

    segments = await client.get(f"{API}/customers/{customer.code}/segments", headers=rep.headers)
    assert segments.status_code == 200
    body = segments.json()
    assert body["value_tier"] == "high_value" and body["pending"] == {}
    assert body["facts"]["deals"] == 1
    assert body["facts"]["purchases_in_window"] == "100000.00"
    assert body["reasons"]["value_tier"].startswith("purchases of 100000.00 CNY")
    assert body["changes"][0]["cause"] == "interaction"


async def test_the_sweep_moves_a_customer_that_went_quiet(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin = await make_user(engine, role=Role.admin)
    customer = await seed_customer(engine, created_days_ago=200)
    await add_interaction(engine, customer, days_ago=100)
    await add_interaction(engine, customer, days_ago=95)
    # Nothing recomputed yet: the stored class is stale, and the segments view says so.
    before = await client.get(f"{API}/customers/{customer.code}/segments", headers=admin.headers)
    assert before.json()["value_tier"] == "normal"
    assert before.json()["pending"]["value_tier"] == "churn_risk"

    r = await client.post(f"{API}/segments/recompute", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["customers_changed"] >= 1
    row = await customer_row(engine, customer)
    assert (row["value_tier"], row["activity"]) == ("churn_risk", "lost")
    # The follow-up date catches up with interactions written behind the service's back.
    assert row["last_follow_up_at"] is not None
    change = next(c for c in await _changes(engine, customer.id) if c["dimension"] == "value_tier")
    assert change == {
        "dimension": "value_tier",
        "old_class": "normal",
        "new_class": "churn_risk",
        "reason": "no_interaction",
        "cause": "manual",
    }
    # A second sweep finds nothing left to change and records nothing.
    again = await client.post(f"{API}/segments/recompute", headers=admin.headers)
    assert again.json()["customers_changed"] == 0 and again.json()["tier_changes"] == 0


async def test_two_sweeps_started_together_run_once(engine: AsyncEngine):
    for i in range(30):
        customer = await seed_customer(engine, created_days_ago=i * 7)
        await add_interaction(engine, customer, days_ago=i * 5, kind="purchase", amount="10")
    results = await asyncio.gather(run_sweep(engine), run_sweep(engine))
    assert sorted(r is None for r in results) == [False, True]
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM segment_sweeps")) == 1


async def test_a_sweep_is_refused_while_another_holds_the_lock(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin = await make_user(engine, role=Role.admin)
    maker = build_sessionmaker(engine)
    async with maker() as holder, holder.begin():
        assert await service.run_sweep(holder, cause="sweep") is not None
        # Still uncommitted: the lock is held by this transaction.
        assert await run_sweep(engine) is None
        busy = await client.post(f"{API}/segments/recompute", headers=admin.headers)
        assert busy.status_code == 409
        assert busy.headers["content-type"] == "application/problem+json"
    assert await run_sweep(engine) is not None


async def test_the_scheduler_skips_when_a_sweep_ran_recently(engine: AsyncEngine):
    maker = build_sessionmaker(engine)
    assert await sweep_once(maker, interval_seconds=600) is True
    assert await sweep_once(maker, interval_seconds=600) is False
    assert await sweep_once(maker, interval_seconds=0.001) is True


async def test_crm_recompute_runs_the_sweep(engine: AsyncEngine, database_url: str):
    customer = await seed_customer(engine, created_days_ago=100)
    result = await _recompute(database_url, wait=False)
    assert result is not None and result["cause"] == "manual"
    assert (await customer_row(engine, customer))["value_tier"] == "churn_risk"


async def test_rules_are_versioned_and_a_change_recomputes(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin = await make_user(engine, role=Role.admin)
    customer = await seed_customer(engine, created_days_ago=10)
    await add_interaction(engine, customer, days_ago=2, kind="purchase", amount="60000")
    await run_sweep(engine)
    assert (await customer_row(engine, customer))["value_tier"] == "normal"

    current = await client.get(f"{API}/segments/rules", headers=admin.headers)
    assert current.status_code == 200
    assert current.json()["version"] == 1
    rules = current.json()["rules"]
    assert rules == DEFAULT_RULES.model_dump(mode="json")
    changed = copy.deepcopy(rules)
    changed["value_tier"]["high_value_amount"] = "50000.00"
    r = await client.put(f"{API}/segments/rules", json=changed, headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    assert r.json()["recompute"]["cause"] == "rule_change"
    assert (await customer_row(engine, customer))["value_tier"] == "high_value"
    change = [c for c in await _changes(engine, customer.id) if c["cause"] == "rule_change"]
    assert change and change[0]["new_class"] == "high_value"

    old = await client.get(f"{API}/segments/rules", params={"version": 1}, headers=admin.headers)
    assert old.json()["rules"]["value_tier"]["high_value_amount"] == "100000.00"
    missing = await client.get(
        f"{API}/segments/rules", params={"version": 9}, headers=admin.headers
    )
    assert missing.status_code == 404
    # The same document again is not a new version.
    same = await client.put(f"{API}/segments/rules", json=changed, headers=admin.headers)
    assert same.json()["version"] == 2 and same.json()["recompute"] is None
    async with engine.connect() as conn:
        audited = await conn.scalar(
            text("SELECT changes FROM audit_log WHERE action = 'segments.rules_update'")
        )
    assert audited == {"value_tier.high_value_amount": {"before": "100000.00", "after": "50000.00"}}


async def test_rules_are_validated_whole(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    rules = DEFAULT_RULES.model_dump(mode="json")
    bad = copy.deepcopy(rules)
    bad["activity"] = {"active_days": 60, "lost_days": 30}
    assert (
        await client.put(f"{API}/segments/rules", json=bad, headers=admin.headers)
    ).status_code == 422
    partial = {"value_tier": rules["value_tier"]}
    assert (
        await client.put(f"{API}/segments/rules", json=partial, headers=admin.headers)
    ).status_code == 422
    extra = {**rules, "surprise": 1}
    assert (
        await client.put(f"{API}/segments/rules", json=extra, headers=admin.headers)
    ).status_code == 422
    rep = await make_user(engine)
    assert (
        await client.put(f"{API}/segments/rules", json=rules, headers=rep.headers)
    ).status_code == 403
    # Reading the thresholds is open to every role that reads segments.
    assert (await client.get(f"{API}/segments/rules", headers=rep.headers)).status_code == 200


async def test_summary_counts_only_what_the_caller_sees(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    rep = await make_user(engine)
    other = await make_user(engine)
    manager = await make_user(engine, role=Role.manager)
    mine = await seed_customer(engine, owner_id=rep.id, created_days_ago=100)
    await seed_customer(engine, owner_id=None)  # the pool: visible to reps
    await seed_customer(engine, owner_id=other.id)
    await seed_customer(engine, owner_id=other.id, created_days_ago=100)
    await run_sweep(engine)
    body = (await client.get(f"{API}/segments/summary", headers=rep.headers)).json()
    assert body["total"] == 2
    assert body["counts"]["value_tier"]["churn_risk"] == 1
    assert body["counts"]["value_tier"]["normal"] == 1
    assert sum(body["counts"]["lifecycle"].values()) == 2
    assert body["counts"]["rfm_segment"]["no_purchase"] == 2
    assert body["last_sweep_at"] is not None
    everything = (await client.get(f"{API}/segments/summary", headers=manager.headers)).json()
    assert everything["total"] == 4
    assert everything["counts"]["value_tier"]["churn_risk"] == 2
    assert mine.code  # used above through the rep's view


async def test_segments_of_a_hidden_customer_are_404(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    rep = await make_user(engine)
    other = await make_user(engine)
    theirs = await seed_customer(engine, owner_id=other.id)
    r = await client.get(f"{API}/customers/{theirs.code}/segments", headers=rep.headers)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


async def test_purchase_amounts_in_reasons_need_contract_read(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    agent = await make_user(engine, role=Role.service)
    customer = await seed_customer(engine, created_days_ago=5)
    await add_interaction(engine, customer, days_ago=1, kind="purchase", amount="120000")
    await run_sweep(engine)
    body = (
        await client.get(f"{API}/customers/{customer.code}/segments", headers=agent.headers)
    ).json()
    assert body["value_tier"] == "high_value"
    assert "120000" not in str(body)
    assert body["facts"]["purchases_in_window"] is None


async def test_rules_in_force_are_read_by_the_sql(engine: AsyncEngine):
    maker = build_sessionmaker(engine)
    async with maker() as session:
        assert (await segment_repo.current_rules(session)).version == 1


async def test_a_sweep_does_not_overwrite_a_fresher_write(engine: AsyncEngine):
    """The sweep's classes come from its snapshot; a customer recomputed by a concurrent
    interaction (committed while the sweep waited for its row) keeps the fresher classes."""
    from app.auth.permissions import ROLE_SCOPES
    from app.auth.principal import Principal
    from app.interactions import service as interactions
    from app.interactions.schemas import InteractionCreate

    rep = await make_user(engine)
    customer = await seed_customer(engine, owner_id=rep.id, created_days_ago=200)
    await add_interaction(engine, customer, days_ago=95)  # quiet: the sweep says churn_risk
    principal = Principal(kind="user", id=rep.id, role=Role.sales, scopes=ROLE_SCOPES[Role.sales])
    maker = build_sessionmaker(engine)
    async with maker() as writer, writer.begin():
        await interactions.create(
            writer,
            principal,
            InteractionCreate(
                customer_code=customer.code, channel="phone", kind="follow_up", direction="inbound"
            ),
        )
        sweep = asyncio.create_task(run_sweep(engine))
        await asyncio.sleep(0.5)  # the sweep's UPDATE now waits for the writer's row lock
        assert not sweep.done()
    assert await sweep is not None
    row = await customer_row(engine, customer)
    assert row["value_tier"] == "normal"  # not the sweep's stale churn_risk
    assert row["activity"] == "active"
    assert row["last_follow_up_at"] > datetime.now(UTC) - timedelta(minutes=5)
    await run_sweep(engine)  # and the next sweep agrees
    assert (await customer_row(engine, customer))["value_tier"] == "normal"
