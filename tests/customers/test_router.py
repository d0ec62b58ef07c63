"""Customer record: create, validation, codes, ETag, idempotency, delete/restore, audit."""

from __future__ import annotations

import asyncio
import re
from datetime import date
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from app.core.config import get_settings
from app.core.db import build_engine, build_sessionmaker
from app.customers import repository as customers_repo
from app.main import create_app
from tests.factories import make_customer, make_user

FULL = {
    "name": "深圳市华南智能制造股份有限公司",
    "kind": "enterprise",
    "contacts": [
        {
            "name": "张经理",
            "title": "采购总监",
            "phones": ["138-1234-5678"],
            "email": "Zhang@HuaNan.cn",
            "wechat_id": "zhang_hn",
            "decision_role": "决策者",
        },
        {"name": "李工", "phones": ["0755 8888 6666"], "decision_role": "user"},
    ],
    "phone": "+86 139 0000 1111",
    "email": "Info@HuaNan.CN",
    "industry": "软件和信息技术服务业",
    "region": {"province": "广东省", "city": "深圳市"},
    "address": "南山区科技园",
    "employee_band": "100_299",
    "revenue_band": "10m_100m",
    "source": "展会",
    "referrer": "王总",
    "first_contact_at": "2026-11-01T10:30:00+08:00",
    "core_needs": "产线数字化改造",
    "need_tags": ["MES", "数据看板"],
    "budget": "500000.00",
    "need_priority": "urgent_important",
    "decision_makers": "张经理、总经理",
    "next_follow_up_at": "2026-12-01T09:00:00+08:00",
    "lifecycle": "老客户",
    "cooperation_status": "active",
    "products": ["MES 标准版"],
    "contract_amount": "120000.5",
}


async def _count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


async def test_create_full_record(client: httpx.AsyncClient, engine: AsyncEngine):
    manager = await make_user(engine, role=Role.manager)
    r = await client.post("/api/v1/customers", json=FULL, headers=manager.headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert re.fullmatch(r"C\d{8}\d{3}", body["code"])
    assert r.headers["location"] == f"/api/v1/customers/{body['code']}"
    assert r.headers["etag"] == '"1"'
    assert body["phone"] == "+8613900001111"
    assert body["email"] == "info@huanan.cn"
    assert body["contacts"][0]["phones"] == ["+8613812345678"]
    assert body["contacts"][0]["email"] == "zhang@huanan.cn"
    assert body["contacts"][0]["decision_role"] == "decision_maker"
    assert body["contacts"][1]["phones"] == ["+8675588886666"]
    assert body["industry"] == "65" and body["industry_label"] == "软件和信息技术服务业"
    assert body["region"] == {"province": "广东省", "city": "深圳市"}
    assert body["source"] == "exhibition"
    assert body["lifecycle"] == "existing"
    assert body["cooperation_status"] == "active"
    assert body["first_cooperation_date"] is not None
    assert body["contract_amount"] == "120000.50"
    assert body["budget"] == "500000.00"
    assert body["flags"] == []
    assert body["created_by"] == f"user:{manager.id}"
    got = await client.get(f"/api/v1/customers/{body['code']}", headers=manager.headers)
    assert got.status_code == 200 and got.json() == body


async def test_missing_key_fields_flag_to_complete(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    body = await make_customer(client, rep, name="无联系方式公司")
    assert body["flags"] == ["to_complete"]
    fixed = await client.patch(
        f"/api/v1/customers/{body['code']}",
        json={"phone": "13812345678", "source": "referral", "industry": "C"},
        headers=rep.headers,
    )
    assert fixed.json()["flags"] == []


async def test_validation_errors_name_each_field_and_write_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    rep = await make_user(engine)
    r = await client.post(
        "/api/v1/customers",
        json={
            "name": "某公司",
            "phone": "12345",
            "kind": "government",
            "email": "not-an-email",
            "contract_amount": "-5",
            "code": "C20260101001",
            "owner": 3,
        },
        headers=rep.headers,
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"phone", "kind", "email", "contract_amount", "code", "owner"}
    assert await _count(engine, "customers") == 0
    assert await _count(engine, "audit_log") == 0
    assert await _count(engine, "customer_code_counters") == 0


async def test_unknown_industry_lists_allowed_values(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    rep = await make_user(engine)
    r = await client.post(
        "/api/v1/customers", json={"name": "x", "industry": "宇宙探索"}, headers=rep.headers
    )
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["field"] == "industry" and "meta/enums" in err["message"]


async def test_unknown_source_rejected_with_choices(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    r = await client.post(
        "/api/v1/customers", json={"name": "x", "source": "飞鸽传书"}, headers=rep.headers
    )
    assert r.status_code == 422
    assert "exhibition (展会)" in r.json()["errors"][0]["message"]


async def test_codes_unique_under_concurrency_across_processes(
    client: httpx.AsyncClient, engine: AsyncEngine, database_url: str
):
    """50 concurrent creates through two app instances with separate pools (two processes)."""
    rep = await make_user(engine)
    other_engine = build_engine(database_url, get_settings())
    other_app = create_app(get_settings(), database_url=database_url)
    other_app.state.engine = other_engine
    other_app.state.sessionmaker = build_sessionmaker(other_engine)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=other_app), base_url="http://test"
        ) as other:
            results = await asyncio.gather(
                *(
                    (client if i % 2 else other).post(
                        "/api/v1/customers", json={"name": f"并发客户{i}"}, headers=rep.headers
                    )
                    for i in range(50)
                )
            )
    finally:
        await other_engine.dispose()
    assert all(r.status_code == 201 for r in results), [r.text for r in results][:3]
    codes = sorted(r.json()["code"] for r in results)
    assert len(set(codes)) == 50
    prefix = codes[0][:9]
    assert all(c.startswith(prefix) and len(c) == 12 for c in codes)
    assert len({int(c[9:]) for c in codes}) == 50
    assert await _count(engine, "customers") == 50


async def test_a_create_in_flight_does_not_hold_up_the_next_code(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
):
    """The day's counter is taken in a transaction of its own: while one create's transaction
    is still open, another create takes the next code and commits."""
    rep = await make_user(engine)
    real = customers_repo.insert_with_code
    entered, release = asyncio.Event(), asyncio.Event()

    async def paused(session: Any, code: str, *args: Any) -> dict[str, Any]:
        row = await real(session, code, *args)
        if not entered.is_set():
            entered.set()
            await release.wait()
        return row

    monkeypatch.setattr(customers_repo, "insert_with_code", paused)
    first = asyncio.create_task(
        client.post("/api/v1/customers", json={"name": "慢的"}, headers=rep.headers)
    )
    try:
        await asyncio.wait_for(entered.wait(), 30)
        second = await asyncio.wait_for(
            client.post("/api/v1/customers", json={"name": "快的"}, headers=rep.headers), 30
        )
        assert second.status_code == 201, second.text
    finally:
        release.set()
    slow = await first
    assert slow.status_code == 201, slow.text
    assert int(slow.json()["code"][9:]) + 1 == int(second.json()["code"][9:])


async def test_a_failed_create_leaves_a_gap_never_a_reused_code(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    rep = await make_user(engine)
    first = await make_customer(client, rep, name="第一个")
    bad = await client.post(
        "/api/v1/customers", json={"name": "x", "source": "飞鸽传书"}, headers=rep.headers
    )
    assert bad.status_code == 422
    after = await make_customer(client, rep, name="第二个")
    assert after["code"][:9] == first["code"][:9]
    assert int(after["code"][9:]) > int(first["code"][9:])
    assert await _count(engine, "customers") == 2


async def test_code_widens_after_999(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    first = await make_customer(client, rep, name="第一个")
    day = date(int(first["code"][1:5]), int(first["code"][5:7]), int(first["code"][7:9]))
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE customer_code_counters SET last_value = 999 WHERE day = :d"), {"d": day}
        )
    wide = await make_customer(client, rep, name="第一千个")
    assert wide["code"] == first["code"][:9] + "1000"


async def test_etag_and_if_match(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    c = await make_customer(client, rep)
    url = f"/api/v1/customers/{c['code']}"
    ok = await client.patch(
        url, json={"address": "海淀区"}, headers={**rep.headers, "If-Match": '"1"'}
    )
    assert ok.status_code == 200 and ok.headers["etag"] == '"2"'
    stale = await client.patch(
        url, json={"address": "朝阳区"}, headers={**rep.headers, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 2
    assert (await client.get(url, headers=rep.headers)).json()["address"] == "海淀区"
    stale_delete = await client.delete(url, headers={**rep.headers, "If-Match": '"1"'})
    assert stale_delete.status_code in (403, 412)  # sales may not delete at all


async def test_patch_without_changes_keeps_version(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    c = await make_customer(client, rep, address="海淀区")
    r = await client.patch(
        f"/api/v1/customers/{c['code']}", json={"address": "海淀区"}, headers=rep.headers
    )
    assert r.json()["version"] == 1
    assert await _count(engine, "audit_log") == 1  # the create only


async def test_patch_null_clears_and_name_cannot_be_cleared(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    rep = await make_user(engine)
    c = await make_customer(client, rep, address="海淀区", phone="13812345678")
    url = f"/api/v1/customers/{c['code']}"
    r = await client.patch(url, json={"address": None}, headers=rep.headers)
    assert r.status_code == 200 and r.json()["address"] is None
    bad = await client.patch(url, json={"name": None}, headers=rep.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "name"
    mass = await client.patch(url, json={"owner_id": 99, "version": 7}, headers=rep.headers)
    assert mass.status_code == 422
    assert {e["field"] for e in mass.json()["errors"]} == {"owner_id", "version"}


async def test_idempotent_create(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    other = await make_user(engine)
    headers = {**rep.headers, "Idempotency-Key": "form-7781"}
    first = await client.post("/api/v1/customers", json={"name": "重试公司"}, headers=headers)
    again = await client.post("/api/v1/customers", json={"name": "重试公司"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert await _count(engine, "customers") == 1
    changed = await client.post("/api/v1/customers", json={"name": "另一家"}, headers=headers)
    assert changed.status_code == 422
    assert await _count(engine, "customers") == 1
    # Keys are scoped to the caller: another user's same key is a different request.
    theirs = await client.post(
        "/api/v1/customers",
        json={"name": "重试公司"},
        headers={**other.headers, "Idempotency-Key": "form-7781"},
    )
    assert theirs.status_code == 201 and theirs.json()["code"] != first.json()["code"]


async def test_idempotent_create_concurrent_retries(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    headers = {**rep.headers, "Idempotency-Key": "burst-1"}
    results = await asyncio.gather(
        *(
            client.post("/api/v1/customers", json={"name": "并发重试"}, headers=headers)
            for _ in range(10)
        )
    )
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["code"] for r in results}) == 1
    assert await _count(engine, "customers") == 1


async def test_soft_delete_and_admin_restore(client: httpx.AsyncClient, engine: AsyncEngine):
    manager = await make_user(engine, role=Role.manager)
    admin = await make_user(engine, role=Role.admin)
    c = await make_customer(client, manager)
    url = f"/api/v1/customers/{c['code']}"
    assert (await client.delete(url, headers=manager.headers)).status_code == 204
    assert (await client.get(url, headers=manager.headers)).status_code == 404
    listed = await client.get("/api/v1/customers", headers=manager.headers)
    assert listed.json()["items"] == []
    assert (await client.post(f"{url}/restore", headers=manager.headers)).status_code == 403
    restored = await client.post(f"{url}/restore", headers=admin.headers)
    assert restored.status_code == 200
    assert (await client.get(url, headers=manager.headers)).status_code == 200
    again = await client.post(f"{url}/restore", headers=admin.headers)
    assert again.status_code == 404
    async with engine.connect() as conn:
        actions = [
            r[0]
            for r in await conn.execute(
                text("SELECT action FROM audit_log WHERE entity_id = :c ORDER BY id"),
                {"c": c["code"]},
            )
        ]
    assert actions == ["customer.create", "customer.delete", "customer.restore"]


async def test_first_cooperation_date_set_once(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    c = await make_customer(client, rep)
    assert c["first_cooperation_date"] is None
    url = f"/api/v1/customers/{c['code']}"
    active = (
        await client.patch(url, json={"cooperation_status": "合作中"}, headers=rep.headers)
    ).json()
    first = active["first_cooperation_date"]
    assert first is not None
    await client.patch(url, json={"cooperation_status": "paused"}, headers=rep.headers)
    again = (
        await client.patch(url, json={"cooperation_status": "active"}, headers=rep.headers)
    ).json()
    assert again["first_cooperation_date"] == first


async def test_update_audits_changed_fields_with_pii_masked(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    rep = await make_user(engine)
    c = await make_customer(client, rep, phone="13812345678", address="旧地址")
    await client.patch(
        f"/api/v1/customers/{c['code']}",
        json={"phone": "13987654321", "address": "新地址"},
        headers=rep.headers,
    )
    async with engine.connect() as conn:
        changes = await conn.scalar(
            text("SELECT changes FROM audit_log WHERE action = 'customer.update'")
        )
    assert set(changes) == {"phone", "address", "version"} - {"version"}
    assert changes["address"] == {"before": "旧地址", "after": "新地址"}
    assert changes["phone"] == {"before": "138****5678", "after": "139****4321"}
    async with engine.connect() as conn:
        everything = await conn.scalar(text("SELECT string_agg(changes::text, ' ') FROM audit_log"))
    assert "13812345678" not in everything and "13987654321" not in everything


async def test_sales_rep_owns_what_they_create(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    other = await make_user(engine)
    c = await make_customer(client, rep)
    assert c["owner_id"] == rep.id
    r = await client.post(
        "/api/v1/customers", json={"name": "x", "owner_id": other.id}, headers=rep.headers
    )
    assert r.status_code == 403


async def test_manager_sets_owner_and_assigns(client: httpx.AsyncClient, engine: AsyncEngine):
    manager = await make_user(engine, role=Role.manager)
    rep = await make_user(engine)
    rep2 = await make_user(engine)
    c = await make_customer(client, manager, owner_id=rep.id)
    assert c["owner_id"] == rep.id
    bad = await client.post(
        "/api/v1/customers", json={"name": "x", "owner_id": 999999}, headers=manager.headers
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "owner_id"
    url = f"/api/v1/customers/{c['code']}"
    moved = await client.post(f"{url}/assign", json={"owner_id": rep2.id}, headers=manager.headers)
    assert moved.status_code == 200 and moved.json()["owner_id"] == rep2.id
    assert (await client.get(url, headers=rep.headers)).status_code == 404
    assert (await client.get(url, headers=rep2.headers)).status_code == 200
    pooled = await client.post(f"{url}/assign", json={"owner_id": None}, headers=manager.headers)
    assert pooled.json()["owner_id"] is None
    denied = await client.post(f"{url}/assign", json={"owner_id": rep.id}, headers=rep2.headers)
    assert denied.status_code == 403
    async with engine.connect() as conn:
        n = await conn.scalar(
            text("SELECT count(*) FROM audit_log WHERE action = 'customer.assign'")
        )
    assert n == 2


async def test_chinese_error_detail(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    r = await client.get(
        "/api/v1/customers/C20990101001", headers={**rep.headers, "Accept-Language": "zh-CN"}
    )
    assert r.status_code == 404 and r.json()["detail"] == "客户不存在。"
