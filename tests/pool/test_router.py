"""The shared pool (公海): the sweep releases quiet potential customers; first claim wins."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from tests.factories import add_interaction, customer_row, make_user, run_sweep, seed_customer

API = "/api/v1"


@pytest.mark.parametrize(("days", "released"), [(89, False), (91, True)])
async def test_potential_customers_quiet_for_90_days_are_released(
    client: httpx.AsyncClient, engine: AsyncEngine, days: int, released: bool
):
    rep = await make_user(engine)
    customer = await seed_customer(
        engine, owner_id=rep.id, created_days_ago=300, owner_assigned_days_ago=300
    )
    await add_interaction(engine, customer, days_ago=days)
    result = await run_sweep(engine)
    assert result is not None and result["released"] == int(released)
    row = await customer_row(engine, customer)
    assert row["owner_id"] == (None if released else rep.id)
    if not released:
        return
    assert row["version"] == 2  # a real change of the record, unlike a recomputed class
    async with engine.connect() as conn:
        change = (
            (await conn.execute(text("SELECT * FROM tier_changes WHERE dimension = 'owner'")))
            .mappings()
            .one()
        )
        audit = (
            (
                await conn.execute(
                    text("SELECT * FROM audit_log WHERE action = 'customer.release_to_pool'")
                )
            )
            .mappings()
            .one()
        )
    assert (change["old_class"], change["new_class"], change["reason"]) == (
        str(rep.id),
        None,
        "pool_release",
    )
    assert audit["entity_id"] == customer.code and audit["actor"] == "system:sweep"
    assert audit["changes"] == {"owner_id": {"before": rep.id, "after": None}}
    admin = await make_user(engine, role=Role.admin)
    verify = await client.get(f"{API}/audit/verify", headers=admin.headers)
    assert verify.json()["ok"] is True
    # The rep now finds it in the pool, like every other rep.
    pool = await client.get(f"{API}/customers", params={"owner": "none"}, headers=rep.headers)
    assert [c["code"] for c in pool.json()["items"]] == [customer.code]


async def test_who_is_not_released(engine: AsyncEngine):
    rep = await make_user(engine)
    bought = await seed_customer(engine, owner_id=rep.id, created_days_ago=300)
    await add_interaction(engine, bought, days_ago=120, kind="purchase", amount="10")
    just_assigned = await seed_customer(
        engine, owner_id=rep.id, created_days_ago=300, owner_assigned_days_ago=5
    )
    await add_interaction(engine, just_assigned, days_ago=120)
    pooled = await seed_customer(engine, owner_id=None, created_days_ago=300)
    result = await run_sweep(engine)
    assert result is not None and result["released"] == 0
    assert (await customer_row(engine, bought))["owner_id"] == rep.id
    assert (await customer_row(engine, just_assigned))["owner_id"] == rep.id
    assert (await customer_row(engine, pooled))["owner_id"] is None


async def test_many_releases_keep_the_audit_chain(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    for _ in range(25):
        await seed_customer(
            engine, owner_id=rep.id, created_days_ago=200, owner_assigned_days_ago=200
        )
    result = await run_sweep(engine)
    assert result is not None and result["released"] == 25
    admin = await make_user(engine, role=Role.admin)
    verify = (await client.get(f"{API}/audit/verify", headers=admin.headers)).json()
    assert verify["ok"] is True and verify["rows_checked"] == 25


async def test_claim_takes_a_pool_customer(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    customer = await seed_customer(engine, owner_id=None, created_days_ago=200)
    r = await client.post(f"{API}/customers/{customer.code}/claim", headers=rep.headers)
    assert r.status_code == 200, r.text
    assert r.json()["owner_id"] == rep.id
    assert r.headers["etag"] == '"2"'
    row = await customer_row(engine, customer)
    assert row["owner_id"] == rep.id and row["owner_assigned_at"] is not None
    async with engine.connect() as conn:
        audit = (
            (await conn.execute(text("SELECT * FROM audit_log WHERE action = 'customer.claim'")))
            .mappings()
            .one()
        )
    assert audit["actor"] == f"user:{rep.id}" and audit["entity_id"] == customer.code
    # Claiming again is harmless; the claim gives a fresh 90 days before the next release.
    again = await client.post(f"{API}/customers/{customer.code}/claim", headers=rep.headers)
    assert again.status_code == 200
    await run_sweep(engine)
    assert (await customer_row(engine, customer))["owner_id"] == rep.id


async def test_claim_answers_for_owned_hidden_and_unknown_customers(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    rep = await make_user(engine)
    other = await make_user(engine)
    admin = await make_user(engine, role=Role.admin)
    manager = await make_user(engine, role=Role.manager)
    theirs = await seed_customer(engine, owner_id=other.id)
    hidden = await client.post(f"{API}/customers/{theirs.code}/claim", headers=rep.headers)
    assert hidden.status_code == 404
    unknown = await client.post(f"{API}/customers/C20970101001/claim", headers=rep.headers)
    assert unknown.status_code == 404
    owned = await client.post(f"{API}/customers/{theirs.code}/claim", headers=admin.headers)
    assert owned.status_code == 409
    pooled = await seed_customer(engine, owner_id=None)
    no_scope = await client.post(f"{API}/customers/{pooled.code}/claim", headers=manager.headers)
    assert no_scope.status_code == 403


async def test_twenty_concurrent_claims_one_winner(client: httpx.AsyncClient, engine: AsyncEngine):
    reps = [await make_user(engine) for _ in range(20)]
    customer = await seed_customer(engine, owner_id=None)
    responses = await asyncio.gather(
        *(
            client.post(f"{API}/customers/{customer.code}/claim", headers=rep.headers)
            for rep in reps
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [404] * 19
    winner = next(r for r in responses if r.status_code == 200).json()["owner_id"]
    assert (await customer_row(engine, customer))["owner_id"] == winner
    async with engine.connect() as conn:
        claims = await conn.scalar(
            text("SELECT count(*) FROM audit_log WHERE action = 'customer.claim'")
        )
        owners = await conn.scalar(
            text("SELECT count(*) FROM tier_changes WHERE dimension = 'owner'")
        )
    assert claims == 1 and owners == 1
