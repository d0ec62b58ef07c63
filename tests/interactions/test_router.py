"""Interactions: every field, validation, listing, corrections, visibility, the timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from tests.factories import (
    TestCustomer,
    TestUser,
    customer_row,
    make_user,
    run_sweep,
    seed_customer,
)

API = "/api/v1"


def _ago(**kw: float) -> str:
    return (datetime.now(UTC) - timedelta(**kw)).isoformat()


def _body(customer: TestCustomer, **fields: Any) -> dict[str, Any]:
    return {
        "customer_code": customer.code,
        "channel": "phone",
        "kind": "follow_up",
        "direction": "outbound",
        **fields,
    }


async def _post(client: httpx.AsyncClient, user: TestUser, body: dict[str, Any]) -> httpx.Response:
    return await client.post(f"{API}/interactions", json=body, headers=user.headers)


async def test_record_an_interaction_with_every_field(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    rep = await make_user(engine)
    customer = await seed_customer(engine, owner_id=rep.id)
    due = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    r = await _post(
        client,
        rep,
        _body(
            customer,
            occurred_at="2026-11-20T14:35:48.123+08:00",
            channel="微信",  # a Chinese label is accepted for the code
            kind="quote",
            direction="inbound",
            summary="客户询问企业版报价，关注数据迁移",
            sentiment="犹豫",
            commitment="下周三前给出采购意向",
            next_action={"title": "发送正式报价单", "due_at": due.isoformat()},
        ),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/api/v1/interactions/{body['id']}"
    assert body["customer_code"] == customer.code
    assert body["occurred_at"] == "2026-11-20T06:35:00+00:00"  # minute precision, UTC
    assert (body["channel"], body["kind"], body["direction"]) == ("wechat", "quote", "inbound")
    assert (body["sentiment"], body["commitment"]) == ("hesitant", "下周三前给出采购意向")
    assert body["staff_id"] == rep.id
    assert body["amount"] is None and body["products"] == [] and body["resolved"] is None
    action = body["next_action"]
    assert action["title"] == "发送正式报价单" and action["assignee_id"] == rep.id
    assert action["status"] == "open"
    assert datetime.fromisoformat(action["due_at"]) == due
    task = await client.get(f"{API}/tasks/{action['task_id']}", headers=rep.headers)
    assert task.json()["interaction_id"] == body["id"]
    row = await customer_row(engine, customer)
    assert row["last_follow_up_at"] == datetime.fromisoformat(body["occurred_at"])
    assert row["next_follow_up_at"] == due
    assert (
        await client.get(f"{API}/interactions/{body['id']}", headers=rep.headers)
    ).json() == body
    async with engine.connect() as conn:
        audit = await conn.scalar(
            text("SELECT changes FROM audit_log WHERE action = 'interaction.create'")
        )
    assert audit["summary"] == {"before": None, "after": "(text)"}  # free text stays out
    assert audit["customer_code"]["after"] == customer.code


async def test_purchases_and_complaints(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    customer = await seed_customer(engine, owner_id=rep.id)
    purchase = await _post(
        client,
        rep,
        _body(customer, kind="purchase", amount="88000.50", products=["CRM 企业版", "实施服务"]),
    )
    assert purchase.status_code == 201, purchase.text
    assert purchase.json()["amount"] == "88000.50"
    assert purchase.json()["products"] == ["CRM 企业版", "实施服务"]
    complaint = await _post(
        client, rep, _body(customer, kind="complaint", sentiment="dissatisfied")
    )
    assert complaint.json()["resolved"] is False
    assert (await customer_row(engine, customer))["value_tier"] == "churn_risk"
    fixed = await client.patch(
        f"{API}/interactions/{complaint.json()['id']}",
        json={"resolved": True},
        headers={**rep.headers, "If-Match": '"1"'},
    )
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["resolved"] is True and fixed.headers["etag"] == '"2"'
    # Recomputed on the correction too: no longer at risk (two touches in 90 days: potential).
    assert (await customer_row(engine, customer))["value_tier"] == "potential"
    stale = await client.patch(
        f"{API}/interactions/{complaint.json()['id']}",
        json={"resolved": False},
        headers={**rep.headers, "If-Match": '"1"'},
    )
    assert stale.status_code == 412


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "purchase"}, "body"),
        ({"amount": "10.00"}, "body"),
        ({"products": ["x"]}, "body"),
        ({"resolved": True}, "body"),
        ({"occurred_at": "2026-11-20T14:35:00"}, "occurred_at"),
        ({"occurred_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "occurred_at"),
        ({"channel": "pigeon"}, "channel"),
        ({"sentiment": "ecstatic"}, "sentiment"),
        ({"kind": "purchase", "amount": "-1"}, "amount"),
        ({"owner_id": 1}, "owner_id"),
        ({"next_action": {"title": "x"}}, "next_action.due_at"),
    ],
)
async def test_invalid_interactions_are_422(
    client: httpx.AsyncClient, engine: AsyncEngine, fields: dict[str, Any], field: str
):
    rep = await make_user(engine)
    customer = await seed_customer(engine, owner_id=rep.id)
    r = await _post(client, rep, _body(customer, **fields))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in {e["field"] for e in r.json()["errors"]}
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM interactions")) == 0


async def test_staff_and_assignee_must_be_able_to_do_the_job(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    rep = await make_user(engine)
    other_rep = await make_user(engine)
    agent = await make_user(engine, role=Role.service)
    customer = await seed_customer(engine, owner_id=rep.id)
    due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    unknown_staff = await _post(client, rep, _body(customer, staff_id=999999))
    assert unknown_staff.status_code == 422
    blind = await _post(
        client,
        rep,
        _body(customer, next_action={"title": "回访", "due_at": due, "assignee_id": other_rep.id}),
    )
    assert blind.status_code == 422
    assert blind.json()["errors"][0]["field"] == "next_action.assignee_id"
    to_agent = await _post(
        client,
        rep,
        _body(customer, next_action={"title": "回访", "due_at": due, "assignee_id": agent.id}),
    )
    assert to_agent.status_code == 201
    assert to_agent.json()["next_action"]["assignee_id"] == agent.id


async def test_list_filters_and_keyset_pages(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    a = await seed_customer(engine, owner_id=rep.id)
    b = await seed_customer(engine, owner_id=rep.id)
    for i in range(5):
        await _post(client, rep, _body(a, occurred_at=_ago(hours=i + 1), channel="visit"))
    await _post(client, rep, _body(b, kind="complaint", occurred_at=_ago(minutes=10)))

    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"customer": a.code, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(f"{API}/interactions", params=params, headers=rep.headers)).json()
        seen.extend(i["id"] for i in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 5 and len(set(seen)) == 5
    times = []
    for interaction_id in seen:
        got = await client.get(f"{API}/interactions/{interaction_id}", headers=rep.headers)
        times.append(got.json()["occurred_at"])
    assert times == sorted(times, reverse=True)

    async def count(**params: Any) -> int:
        r = await client.get(f"{API}/interactions", params=params, headers=rep.headers)
        assert r.status_code == 200, r.text
        return len(r.json()["items"])

    assert await count() == 6
    assert await count(kind="complaint") == 1
    assert await count(channel=["visit", "phone"]) == 6
    assert await count(channel="电话") == 1
    assert await count(resolved="false") == 1
    assert await count(staff="me") == 6
    assert await count(**{"from": _ago(hours=2, minutes=30)}) == 3
    bad = await client.get(f"{API}/interactions", params={"cursor": "nope"}, headers=rep.headers)
    assert bad.status_code == 422


async def test_changing_the_kind_drops_the_old_kinds_fields(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    rep = await make_user(engine)
    customer = await seed_customer(engine, owner_id=rep.id)
    purchase = await _post(client, rep, _body(customer, kind="purchase", amount="500"))
    url = f"{API}/interactions/{purchase.json()['id']}"
    r = await client.patch(url, json={"kind": "quote"}, headers=rep.headers)
    assert r.status_code == 200, r.text
    assert r.json()["amount"] is None and r.json()["kind"] == "quote"
    r = await client.patch(url, json={"kind": "purchase"}, headers=rep.headers)
    assert r.status_code == 422
    r = await client.patch(url, json={"kind": None}, headers=rep.headers)
    assert r.status_code == 422
    r = await client.patch(url, json={"surprise": 1}, headers=rep.headers)
    assert r.status_code == 422


async def test_amounts_are_hidden_without_contract_read(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    agent = await make_user(engine, role=Role.service)
    customer = await seed_customer(engine)
    r = await _post(client, agent, _body(customer, kind="purchase", amount="1234.00"))
    assert r.status_code == 201, r.text
    assert r.json()["amount"] is None
    listed = (await client.get(f"{API}/interactions", headers=agent.headers)).json()
    assert listed["items"][0]["amount"] is None
    timeline = (
        await client.get(f"{API}/customers/{customer.code}/timeline", headers=agent.headers)
    ).json()
    assert "1234" not in str(timeline)


async def test_a_rep_cannot_reach_another_reps_customer(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    owner = await make_user(engine)
    rep = await make_user(engine)
    theirs = await seed_customer(engine, owner_id=owner.id)
    due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    created = await _post(
        client, owner, _body(theirs, next_action={"title": "回访", "due_at": due})
    )
    interaction_id = created.json()["id"]
    task_id = created.json()["next_action"]["task_id"]
    h = rep.headers
    attempts = [
        await _post(client, rep, _body(theirs)),
        await client.get(f"{API}/interactions/{interaction_id}", headers=h),
        await client.patch(
            f"{API}/interactions/{interaction_id}", json={"summary": "x"}, headers=h
        ),
        await client.get(f"{API}/interactions", params={"customer": theirs.code}, headers=h),
        await client.get(f"{API}/customers/{theirs.code}/timeline", headers=h),
        await client.get(f"{API}/customers/{theirs.code}/segments", headers=h),
        await client.post(f"{API}/customers/{theirs.code}/claim", headers=h),
        await client.post(
            f"{API}/tasks",
            json={"customer_code": theirs.code, "title": "x", "due_at": due},
            headers=h,
        ),
        await client.get(f"{API}/tasks/{task_id}", headers=h),
        await client.patch(f"{API}/tasks/{task_id}", json={"status": "done"}, headers=h),
        await client.get(f"{API}/tasks", params={"customer": theirs.code}, headers=h),
    ]
    assert [r.status_code for r in attempts] == [404] * len(attempts)
    assert (await client.get(f"{API}/interactions", headers=h)).json()["items"] == []
    assert (await client.get(f"{API}/tasks", headers=h)).json()["items"] == []


async def test_a_pool_customer_is_readable_but_must_be_claimed_to_log(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    manager = await make_user(engine, role=Role.manager)
    rep = await make_user(engine)
    pooled = await seed_customer(engine, owner_id=None)
    logged = await _post(client, manager, _body(pooled))
    assert logged.status_code == 201
    assert (
        await client.get(f"{API}/interactions/{logged.json()['id']}", headers=rep.headers)
    ).status_code == 200
    blocked = await _post(client, rep, _body(pooled))
    assert blocked.status_code == 403
    patch = await client.patch(
        f"{API}/interactions/{logged.json()['id']}", json={"summary": "x"}, headers=rep.headers
    )
    assert patch.status_code == 403
    await client.post(f"{API}/customers/{pooled.code}/claim", headers=rep.headers)
    assert (await _post(client, rep, _body(pooled))).status_code == 201


async def test_timeline_merges_everything_in_time_order(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    manager = await make_user(engine, role=Role.manager)
    created = await client.post(
        f"{API}/customers", json={"name": "杭州云帆科技有限公司"}, headers=manager.headers
    )
    code = created.json()["code"]
    await client.patch(
        f"{API}/customers/{code}", json={"core_needs": "上云"}, headers=manager.headers
    )
    due = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    for i in range(3):
        await client.post(
            f"{API}/interactions",
            json={
                "customer_code": code,
                "channel": "phone",
                "kind": "purchase",
                "direction": "outbound",
                "amount": "50000",
                "occurred_at": _ago(minutes=10 - i),
                **({"next_action": {"title": "回访", "due_at": due}} if i == 0 else {}),
            },
            headers=manager.headers,
        )
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        r = await client.get(
            f"{API}/customers/{code}/timeline", params=params, headers=manager.headers
        )
        assert r.status_code == 200, r.text
        entries.extend(r.json()["items"])
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    kinds = [e["type"] for e in entries]
    assert kinds.count("interaction") == 3
    assert kinds.count("task") == 1
    assert kinds.count("edit") == 3  # create, update, and the first deal starting cooperation
    assert "tier_change" in kinds
    stamps = [e["at"] for e in entries]
    assert stamps == sorted(stamps, reverse=True)
    assert len({(e["type"], e["id"]) for e in entries}) == len(entries)
    edits = [e for e in entries if e["type"] == "edit" and e["data"]["action"] == "customer.update"]
    assert any(e["data"]["changes"].get("core_needs", {}).get("after") == "上云" for e in edits)
    assert any("cooperation_status" in e["data"]["changes"] for e in edits)
    tiers = [e["data"] for e in entries if e["type"] == "tier_change"]
    assert any(t["new_class"] == "high_value" and t["reason"] == "purchase_amount" for t in tiers)
    assert any(t["dimension"] == "lifecycle" and t["new_class"] == "existing" for t in tiers)


async def test_recorded_interactions_keep_the_sweep_idle(
    engine: AsyncEngine, client: httpx.AsyncClient
):
    """What a write computes is what the sweep computes: nothing left to change afterwards."""
    rep = await make_user(engine)
    customer = await seed_customer(engine, owner_id=rep.id, core_needs="采购")
    for kind, amount in (("inquiry", None), ("purchase", "120000"), ("feedback", None)):
        body = _body(customer, kind=kind, **({"amount": amount} if amount else {}))
        assert (await _post(client, rep, body)).status_code == 201
    await run_sweep(engine)  # first sweep scores RFM for the whole base
    result = await run_sweep(engine)
    assert result is not None and result["customers_changed"] == 0
