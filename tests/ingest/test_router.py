"""Webhook delivery end to end: signatures, inbox first, identity, replays, failures, retry."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from app.ingest.signature import sign
from tests.factories import TestUser, make_user

FORM_MAPPING = {
    "customer.name": "data.company",
    "customer.phone": "data.mobile",
    "customer.email": "data.email",
    "contact.name": "data.name",
    "customer.city": "data.city",
    "interaction.summary": "data.message",
    "external_id": "data.visitor_id",
}


async def _source(client: httpx.AsyncClient, admin: TestUser, **over: Any) -> dict[str, Any]:
    spec = {
        "slug": "site-form",
        "name": "官网表单",
        "kind": "form",
        "channel": "website_form",
        "source_channel": "website_form",
        "mapping": FORM_MAPPING,
    }
    spec.update(over)
    r = await client.post("/api/v1/webhook-sources", json=spec, headers=admin.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def deliver(
    client: httpx.AsyncClient,
    slug: str,
    secret: str,
    payload: Any,
    *,
    msg_id: str | None = None,
    ts: int | None = None,
    body: bytes | None = None,
) -> httpx.Response:
    raw = body if body is not None else orjson.dumps(payload)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = ts if ts is not None else int(time.time())
    return await client.post(
        f"/api/v1/webhooks/{slug}",
        content=raw,
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(secret, msg_id, ts, raw),
        },
    )


async def _count(engine: AsyncEngine, sql: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(sql)) or 0)


FORM = {
    "data": {
        "company": "北京某某科技有限公司",
        "mobile": "138 1234 5678",
        "name": "张经理",
        "city": "北京市",
        "message": "想了解 MES 报价",
        "visitor_id": "v-881",
    }
}


async def test_form_creates_customer_and_later_call_attaches(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin = await make_user(engine, role=Role.admin)
    form = await _source(client, admin)
    calls = await _source(
        client,
        admin,
        slug="call-center",
        name="呼叫中心",
        channel="phone",
        mapping={"customer.phone": "caller", "interaction.summary": "notes"},
    )
    r = await deliver(client, "site-form", form["secret"], FORM)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "processed"
    code = r.json()["customer_code"]
    again = await deliver(
        client, "call-center", calls["secret"], {"caller": "+86-138-1234-5678", "notes": "来电询价"}
    )
    assert again.json()["customer_code"] == code
    assert await _count(engine, "SELECT count(*) FROM customers") == 1
    customer = (await client.get(f"/api/v1/customers/{code}", headers=admin.headers)).json()
    assert customer["name"] == "北京某某科技有限公司"
    assert customer["phone"] == "+8613812345678"
    assert customer["source"] == "website_form"
    assert customer["contacts"][0]["name"] == "张经理"
    # The sender's own id also identifies the person on later events.
    by_id = await deliver(client, "site-form", form["secret"], {"data": {"visitor_id": "v-881"}})
    assert by_id.json()["customer_code"] == code
    # Each event became an interaction on the one customer, and its tiers were recomputed.
    listed = await client.get(
        "/api/v1/interactions", params={"customer": code}, headers=admin.headers
    )
    items = listed.json()["items"]
    assert sorted(i["channel"] for i in items) == ["phone", "website_form", "website_form"]
    assert {i["summary"] for i in items} >= {"想了解 MES 报价", "来电询价"}
    again_customer = (await client.get(f"/api/v1/customers/{code}", headers=admin.headers)).json()
    assert again_customer["last_follow_up_at"] is not None
    assert again_customer["activity"] == "active"


async def test_matched_customer_gains_what_it_lacked_and_keeps_what_it_had(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin = await make_user(engine, role=Role.admin)
    form = await _source(client, admin)
    first = {"data": {"company": "甲公司", "mobile": "13812345678", "visitor_id": "v-1"}}
    r = await deliver(client, "site-form", form["secret"], first)
    code = r.json()["customer_code"]
    before = (await client.get(f"/api/v1/customers/{code}", headers=admin.headers)).json()
    assert before["email"] is None
    # Same phone: the email it lacked is filled; its sender id for this source stays v-1.
    later = {"data": {"mobile": "13812345678", "email": "A@Example.com", "visitor_id": "v-2"}}
    r = await deliver(client, "site-form", form["secret"], later)
    assert r.json()["customer_code"] == code
    after = (await client.get(f"/api/v1/customers/{code}", headers=admin.headers)).json()
    assert after["email"] == "a@example.com"
    assert after["version"] == before["version"] + 1
    async with engine.connect() as conn:
        ids = await conn.scalar(text("SELECT external_ids FROM customers"))
    assert ids == {"site-form": "v-1"}
    # Nothing left to fill: the customer row is not rewritten.
    r = await deliver(client, "site-form", form["secret"], later)
    assert r.json()["status"] == "processed"
    again = (await client.get(f"/api/v1/customers/{code}", headers=admin.headers)).json()
    assert again["version"] == after["version"]
    assert await _count(engine, "SELECT count(*) FROM customers") == 1


async def test_replayed_webhook_id_has_no_second_effect(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin = await make_user(engine, role=Role.admin)
    form = await _source(client, admin)
    first = await deliver(client, "site-form", form["secret"], FORM, msg_id="msg_1")
    replay = await deliver(client, "site-form", form["secret"], FORM, msg_id="msg_1")
    assert first.json()["status"] == "processed"
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    assert await _count(engine, "SELECT count(*) FROM webhook_inbox") == 1


async def test_fifty_concurrent_deliveries_one_effect(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin = await make_user(engine, role=Role.admin)
    form = await _source(client, admin)
    ts = int(time.time())
    results = await asyncio.gather(
        *(
            deliver(client, "site-form", form["secret"], FORM, msg_id="msg_burst", ts=ts)
            for _ in range(50)
        )
    )
    statuses = sorted(r.json()["status"] for r in results)
    assert statuses.count("processed") == 1 and statuses.count("duplicate") == 49
    assert await _count(engine, "SELECT count(*) FROM customers") == 1
    assert await _count(engine, "SELECT count(*) FROM webhook_inbox") == 1


async def test_bad_signatures_store_nothing(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    form = await _source(client, admin)
    raw = orjson.dumps(FORM)
    ts = int(time.time())
    good = sign(form["secret"], "msg_x", ts, raw)
    cases = [
        {
            "webhook-id": "msg_x",
            "webhook-timestamp": str(ts),
            "webhook-signature": good,
            "_body": raw + b" ",
        },
        {"webhook-id": "msg_y", "webhook-timestamp": str(ts), "webhook-signature": good},
        {
            "webhook-id": "msg_x",
            "webhook-timestamp": str(ts - 400),
            "webhook-signature": sign(form["secret"], "msg_x", ts - 400, raw),
        },
        {"webhook-id": "msg_x", "webhook-timestamp": str(ts)},
    ]
    for case in cases:
        body = case.pop("_body", raw)
        r = await client.post(
            "/api/v1/webhooks/site-form",
            content=body,
            headers={"content-type": "application/json", **case},
        )
        assert r.status_code == 401, case
        assert r.headers["content-type"] == "application/problem+json"
    unknown = await deliver(client, "nope", form["secret"], FORM)
    assert unknown.status_code == 404
    assert await _count(engine, "SELECT count(*) FROM webhook_inbox") == 0


async def test_secret_rotation(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    form = await _source(client, admin)
    rotated = (
        await client.post(
            f"/api/v1/webhook-sources/{form['id']}/rotate-secret", headers=admin.headers
        )
    ).json()
    assert rotated["secrets_active"] == 2
    assert (await deliver(client, "site-form", form["secret"], FORM)).status_code == 200
    assert (await deliver(client, "site-form", rotated["secret"], FORM)).status_code == 200
    await client.patch(
        f"/api/v1/webhook-sources/{form['id']}",
        json={"drop_old_secrets": True},
        headers=admin.headers,
    )
    assert (await deliver(client, "site-form", form["secret"], FORM)).status_code == 401
    assert (await deliver(client, "site-form", rotated["secret"], FORM)).status_code == 200
    listed = (await client.get("/api/v1/webhook-sources", headers=admin.headers)).json()
    assert "secret" not in listed[0] and "secrets" not in listed[0]


async def test_failing_event_stays_in_inbox_and_retries(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin = await make_user(engine, role=Role.admin)
    chat = await _source(
        client,
        admin,
        slug="chat",
        name="在线客服",
        kind="chat",
        channel="chat",
        mapping={"contact.name": "visitor.name", "chat.messages": "wrong.path"},
    )
    payload = {
        "visitor": {"name": "李女士"},
        "conversation": {
            "messages": [
                {"from": "visitor", "text": "你好，请问价格？", "at": "2026-11-20T10:00:00+08:00"},
                {"from": "agent", "text": "您好，请留下电话", "at": "2026-11-20T10:01:00+08:00"},
            ]
        },
    }
    r = await deliver(client, "chat", chat["secret"], payload)
    assert r.status_code == 202 and r.json()["status"] == "failed"
    inbox = (
        await client.get(
            "/api/v1/webhook-inbox", params={"status": "failed"}, headers=admin.headers
        )
    ).json()["items"]
    assert len(inbox) == 1 and "no messages" in inbox[0]["error"]
    assert "李女士" not in inbox[0]["error"]
    assert await _count(engine, "SELECT count(*) FROM customers") == 0
    await client.patch(
        f"/api/v1/webhook-sources/{chat['id']}",
        json={
            "mapping": {"contact.name": "visitor.name", "chat.messages": "conversation.messages"}
        },
        headers=admin.headers,
    )
    retried = await client.post(
        f"/api/v1/webhook-inbox/{inbox[0]['id']}/retry", headers=admin.headers
    )
    assert retried.status_code == 200 and retried.json()["status"] == "processed"
    assert await _count(engine, "SELECT count(*) FROM customers") == 1
    done = (await client.get("/api/v1/webhook-inbox", headers=admin.headers)).json()["items"][0]
    assert done["status"] == "processed" and done["attempts"] == 2
    chats = (
        await client.get(
            "/api/v1/interactions",
            params={"customer": done["customer_code"]},
            headers=admin.headers,
        )
    ).json()["items"]
    assert len(chats) == 1 and chats[0]["channel"] == "chat"
    assert chats[0]["summary"] == "客户：你好，请问价格？\n客服：您好，请留下电话"
    # Retried once more: already processed, nothing happens twice.
    again = await client.post(
        f"/api/v1/webhook-inbox/{inbox[0]['id']}/retry", headers=admin.headers
    )
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["customer_code"] == done["customer_code"]
    assert await _count(engine, "SELECT count(*) FROM interactions") == 1
    missing = await client.post("/api/v1/webhook-inbox/999999/retry", headers=admin.headers)
    assert missing.status_code == 404


async def test_chat_per_message_mode(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    chat = await _source(
        client,
        admin,
        slug="chat2",
        name="在线客服",
        kind="chat",
        channel="wechat",
        chat_mode="message",
        mapping={"contact.wechat_id": "openid", "chat.messages": "messages"},
    )
    payload = {
        "openid": "wx-778",
        "messages": [
            {"from": "visitor", "text": "在吗", "at": "2026-11-20T10:00:00+08:00"},
            {"from": "agent", "text": "在的", "at": "2026-11-20T10:02:00+08:00"},
        ],
    }
    r = await deliver(client, "chat2", chat["secret"], payload)
    code = r.json()["customer_code"]
    items = (
        await client.get("/api/v1/interactions", params={"customer": code}, headers=admin.headers)
    ).json()["items"]
    assert sorted((i["direction"], i["summary"]) for i in items) == [
        ("inbound", "在吗"),
        ("outbound", "在的"),
    ]
    # The WeChat id identifies the same person next time.
    again = await deliver(
        client, "chat2", chat["secret"], {**payload, "messages": payload["messages"][:1]}
    )
    assert again.json()["customer_code"] == code


async def test_round_robin_assignment(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    reps = [await make_user(engine) for _ in range(3)]
    form = await _source(client, admin, assignment={"mode": "round_robin"})
    owners = []
    for i in range(6):
        r = await deliver(
            client,
            "site-form",
            form["secret"],
            {"data": {"company": f"公司{i}", "mobile": f"1381234{i:04d}"}},
        )
        code = r.json()["customer_code"]
        owners.append(
            (await client.get(f"/api/v1/customers/{code}", headers=admin.headers)).json()[
                "owner_id"
            ]
        )
    assert owners == [r.id for r in reps] * 2


async def test_unparseable_phone_kept_and_flagged(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    form = await _source(client, admin)
    r = await deliver(
        client,
        "site-form",
        form["secret"],
        {"data": {"company": "某公司", "mobile": "138****5678"}},
    )
    customer = (
        await client.get(f"/api/v1/customers/{r.json()['customer_code']}", headers=admin.headers)
    ).json()
    assert "to_verify" in customer["flags"] and customer["phone"] is None


async def test_source_mapping_validated(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    r = await client.post(
        "/api/v1/webhook-sources",
        json={"slug": "x1", "name": "x", "kind": "form", "mapping": {"customer.password": "a"}},
        headers=admin.headers,
    )
    assert r.status_code == 422


async def test_assignment_by_region_with_fallback(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    south, north, fallback = [await make_user(engine) for _ in range(3)]
    form = await _source(
        client,
        admin,
        assignment={
            "mode": "by_region",
            "rules": {"广东省": south.id, "北京市": north.id},
            "owner_id": fallback.id,
        },
        mapping={**FORM_MAPPING, "customer.province": "data.province"},
    )

    async def owner_of(payload: dict[str, Any]) -> int:
        r = await deliver(client, "site-form", form["secret"], payload)
        code = r.json()["customer_code"]
        return int(
            (await client.get(f"/api/v1/customers/{code}", headers=admin.headers)).json()[
                "owner_id"
            ]
        )

    assert await owner_of({"data": {"company": "广州甲", "province": "广东省"}}) == south.id
    assert await owner_of({"data": {"company": "北京乙", "city": "北京市"}}) == north.id
    assert await owner_of({"data": {"company": "成都丙", "province": "四川省"}}) == fallback.id
