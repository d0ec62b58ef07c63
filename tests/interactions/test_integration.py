"""Interactions with the rest: idempotent retries, deals starting cooperation, edits that
reclassify the customer at once."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from tests.factories import make_customer, make_user


async def _count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


async def test_idempotent_interaction(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    c = await make_customer(client, rep)
    body = {
        "customer_code": c["code"],
        "channel": "phone",
        "kind": "follow_up",
        "direction": "outbound",
        "summary": "回访",
    }
    headers = {**rep.headers, "Idempotency-Key": "call-42"}
    results = await asyncio.gather(
        *(client.post("/api/v1/interactions", json=body, headers=headers) for _ in range(5))
    )
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["id"] for r in results}) == 1
    assert await _count(engine, "interactions") == 1
    other = await client.post(
        "/api/v1/interactions", json={**body, "summary": "另一次"}, headers=headers
    )
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_first_deal_starts_cooperation(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    c = await make_customer(client, rep)
    assert c["cooperation_status"] == "not_started"
    r = await client.post(
        "/api/v1/interactions",
        json={
            "customer_code": c["code"],
            "channel": "visit",
            "kind": "purchase",
            "direction": "inbound",
            "amount": "30000",
            "products": ["MES"],
            "occurred_at": "2026-11-20T15:30:00+08:00",
        },
        headers=rep.headers,
    )
    assert r.status_code == 201, r.text
    after = (await client.get(f"/api/v1/customers/{c['code']}", headers=rep.headers)).json()
    assert after["cooperation_status"] == "active"
    assert after["first_cooperation_date"] == "2026-11-20"
    assert after["last_cooperation_date"] == "2026-11-20"
    assert after["lifecycle"] == "new"
    paused = await client.patch(
        f"/api/v1/customers/{c['code']}", json={"cooperation_status": "paused"}, headers=rep.headers
    )
    assert paused.status_code == 200
    await client.post(
        "/api/v1/interactions",
        json={
            "customer_code": c["code"],
            "channel": "visit",
            "kind": "purchase",
            "direction": "inbound",
            "amount": "10",
            "products": ["MES"],
        },
        headers=rep.headers,
    )
    again = (await client.get(f"/api/v1/customers/{c['code']}", headers=rep.headers)).json()
    # A later deal does not override a status someone set on purpose.
    assert again["cooperation_status"] == "paused"
    assert again["first_cooperation_date"] == "2026-11-20"
    assert again["lifecycle"] == "existing"


async def test_editing_needs_reclassifies_immediately(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    m = await make_user(engine, role=Role.manager)
    c = await make_customer(client, m)
    assert c["value_tier"] == "normal"
    r = await client.patch(
        f"/api/v1/customers/{c['code']}", json={"core_needs": "需要 CRM 系统"}, headers=m.headers
    )
    assert r.json()["value_tier"] == "potential"
    created = await make_customer(client, m, name="有需求的新客户", need_tags=["ERP"])
    assert created["value_tier"] == "potential"
