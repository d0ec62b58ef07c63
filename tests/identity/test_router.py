"""Duplicate candidates, merge with its field rule, redirects, and undo."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from tests.factories import make_customer, make_user


async def test_same_company_apart_from_suffix_is_a_candidate_not_merged(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    m = await make_user(engine, role=Role.manager)
    a = await make_customer(client, m, name="北京某某科技有限公司")
    b = await make_customer(client, m, name="北京某某科技")
    c = await make_customer(client, m, name="北京某某科技（中国）有限公司")
    r = await client.get("/api/v1/customers/duplicates", headers=m.headers)
    assert r.status_code == 200
    pairs = [
        ({x["code"] for x in item["customers"]}, item["score"], item["reason"])
        for item in r.json()["items"]
    ]
    assert {frozenset(p[0]) for p in pairs} == {
        frozenset({a["code"], b["code"]}),
        frozenset({a["code"], c["code"]}),
        frozenset({b["code"], c["code"]}),
    }
    assert all(p[1] >= 0.9 and "legal suffix" in p[2] for p in pairs)
    # Never merged silently: all three are still separate, live customers.
    listed = await client.get("/api/v1/customers", headers=m.headers)
    assert len(listed.json()["items"]) == 3


async def test_same_phone_is_a_candidate(client: httpx.AsyncClient, engine: AsyncEngine):
    m = await make_user(engine, role=Role.manager)
    await make_customer(client, m, name="甲公司", phone="13812345678")
    await make_customer(client, m, name="乙公司", phone="+86 138-1234-5678")
    items = (await client.get("/api/v1/customers/duplicates", headers=m.headers)).json()["items"]
    assert len(items) == 1 and items[0]["reason"] == "same phone" and items[0]["score"] == 1.0


async def test_people_need_same_city_or_phone_prefix(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    m = await make_user(engine, role=Role.manager)
    await make_customer(client, m, name="王伟", kind="individual", region={"city": "杭州市"})
    await make_customer(client, m, name="王伟", kind="individual", region={"city": "成都市"})
    await make_customer(client, m, name="王伟", kind="individual", region={"city": "杭州市"})
    items = (await client.get("/api/v1/customers/duplicates", headers=m.headers)).json()["items"]
    assert len(items) == 1 and items[0]["reason"] == "same name and city"


async def test_fuzzy_scan_finds_similar_names(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    await make_customer(client, admin, name="上海浦东新区物流集团有限公司")
    await make_customer(client, admin, name="上海浦东新区物流集团股份公司")
    await make_customer(client, admin, name="杭州西湖茶业")
    before = (await client.get("/api/v1/customers/duplicates", headers=admin.headers)).json()
    scan = await client.post(
        "/api/v1/customers/duplicates/scan", params={"full": "true"}, headers=admin.headers
    )
    assert scan.status_code == 200
    after = (await client.get("/api/v1/customers/duplicates", headers=admin.headers)).json()
    names = [{x["name"] for x in i["customers"]} for i in after["items"]]
    assert {"上海浦东新区物流集团有限公司", "上海浦东新区物流集团股份公司"} in names
    assert not any("杭州西湖茶业" in n for n in names)
    assert len(after["items"]) >= len(before["items"])


async def test_duplicates_respect_visibility_and_dismiss(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    m = await make_user(engine, role=Role.manager)
    rep = await make_user(engine)
    data_admin = await make_user(engine, role=Role.data_admin)
    await make_customer(client, m, name="某某贸易有限公司", owner_id=rep.id)
    await make_customer(client, m, name="某某贸易", owner_id=m.id)
    rep_view = (await client.get("/api/v1/customers/duplicates", headers=rep.headers)).json()
    assert rep_view["items"] == []
    items = (await client.get("/api/v1/customers/duplicates", headers=m.headers)).json()["items"]
    cid = items[0]["id"]
    assert (
        await client.post(f"/api/v1/customers/duplicates/{cid}/dismiss", headers=m.headers)
    ).status_code == 403
    ok = await client.post(
        f"/api/v1/customers/duplicates/{cid}/dismiss", headers=data_admin.headers
    )
    assert ok.status_code == 204
    assert (await client.get("/api/v1/customers/duplicates", headers=m.headers)).json()[
        "items"
    ] == []


async def test_merge_moves_everything_and_undo_restores(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin = await make_user(engine, role=Role.admin)
    await client.post(
        "/api/v1/fields",
        json={"key": "level", "label": "等级", "type": "text"},
        headers=admin.headers,
    )
    await client.post(
        "/api/v1/fields",
        json={"key": "seats", "label": "席位", "type": "number"},
        headers=admin.headers,
    )
    survivor = await make_customer(
        client,
        admin,
        name="北京某某科技有限公司",
        phone="13812345678",
        address="海淀区",
        contacts=[{"name": "张经理", "phones": ["13812345678"]}],
        custom={"level": "A"},
        need_tags=["MES"],
    )
    merged = await make_customer(
        client,
        admin,
        name="北京某某科技",
        phone="13900001111",
        email="info@mm.cn",
        address="朝阳区",
        contacts=[{"name": "李工", "email": "li@mm.cn"}],
        custom={"level": "B", "seats": 20},
        need_tags=["ERP"],
        industry="65",
    )
    tag = (
        await client.post(
            "/api/v1/tags",
            json={"name": "重点客户", "category": "customer_trait"},
            headers=admin.headers,
        )
    ).json()
    put = await client.put(
        f"/api/v1/customers/{merged['code']}/tags/{tag['id']}", headers=admin.headers
    )
    assert put.status_code in (200, 204), put.text
    r = await client.post(
        "/api/v1/customers/merge",
        json={"survivor": survivor["code"], "merged": [merged["code"]]},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [t["name"] for t in body["tags"]] == ["重点客户"]
    # The survivor's non-empty values win; its empty fields are filled from the merged one.
    assert body["phone"] == "+8613812345678" and body["address"] == "海淀区"
    assert body["email"] == "info@mm.cn" and body["industry"] == "65"
    assert [c["name"] for c in body["contacts"]] == ["张经理", "李工"]
    assert body["custom"] == {"level": "A", "seats": 20}
    assert body["need_tags"] == ["MES", "ERP"]
    # The merged code redirects to the survivor, path and query kept.
    moved = await client.get(f"/api/v1/customers/{merged['code']}?x=1", headers=admin.headers)
    assert moved.status_code == 308
    assert moved.headers["location"] == f"/api/v1/customers/{survivor['code']}?x=1"
    listed = await client.get("/api/v1/customers", headers=admin.headers)
    assert [c["code"] for c in listed.json()["items"]] == [survivor["code"]]
    async with engine.connect() as conn:
        audit_rows = (
            await conn.execute(
                text("SELECT changes FROM audit_log WHERE action = 'customer.merge'")
            )
        ).all()
    assert len(audit_rows) == 1
    changes = audit_rows[0][0]
    assert changes["merged"] == [merged["code"]]
    assert changes["discarded"]["phone"] == [{"code": merged["code"], "value": "139****1111"}]
    assert changes["discarded"]["address"][0]["value"] == "朝阳区"
    assert "13900001111" not in str(changes)

    undo = await client.post(
        f"/api/v1/customers/merges/{body['merge_id']}/undo", headers=admin.headers
    )
    assert undo.status_code == 200, undo.text
    back = undo.json()
    assert back["email"] is None and back["industry"] is None
    assert [c["name"] for c in back["contacts"]] == ["张经理"]
    assert back["custom"] == {"level": "A"}
    assert back["tags"] == []
    again = await client.get(f"/api/v1/customers/{merged['code']}", headers=admin.headers)
    assert again.status_code == 200 and again.json()["email"] == "info@mm.cn"
    twice = await client.post(
        f"/api/v1/customers/merges/{body['merge_id']}/undo", headers=admin.headers
    )
    assert twice.status_code == 409


async def test_merge_permissions_and_validation(client: httpx.AsyncClient, engine: AsyncEngine):
    m = await make_user(engine, role=Role.manager)
    data_admin = await make_user(engine, role=Role.data_admin)
    a = await make_customer(client, m, name="甲")
    b = await make_customer(client, m, name="乙")
    denied = await client.post(
        "/api/v1/customers/merge",
        json={"survivor": a["code"], "merged": [b["code"]]},
        headers=m.headers,
    )
    assert denied.status_code == 403
    same = await client.post(
        "/api/v1/customers/merge",
        json={"survivor": a["code"], "merged": [a["code"]]},
        headers=data_admin.headers,
    )
    assert same.status_code == 422
    missing = await client.post(
        "/api/v1/customers/merge",
        json={"survivor": a["code"], "merged": ["C20990101001"]},
        headers=data_admin.headers,
    )
    assert missing.status_code == 404
    ok = await client.post(
        "/api/v1/customers/merge",
        json={"survivor": a["code"], "merged": [b["code"]]},
        headers=data_admin.headers,
    )
    assert ok.status_code == 200
    undo = await client.post(
        f"/api/v1/customers/merges/{ok.json()['merge_id']}/undo", headers=data_admin.headers
    )
    assert undo.status_code == 403
    restore = await client.post(
        f"/api/v1/customers/{b['code']}/restore", headers=data_admin.headers
    )
    assert restore.status_code == 403


async def test_redirect_only_when_survivor_visible(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    rep = await make_user(engine)
    other = await make_user(engine)
    a = await make_customer(client, admin, name="甲", owner_id=other.id)
    b = await make_customer(client, admin, name="乙", owner_id=rep.id)
    await client.post(
        "/api/v1/customers/merge",
        json={"survivor": a["code"], "merged": [b["code"]]},
        headers=admin.headers,
    )
    r = await client.get(f"/api/v1/customers/{b['code']}", headers=rep.headers)
    assert r.status_code == 404


async def test_merge_moves_interactions_and_tasks_and_undo_returns_them(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin = await make_user(engine, role=Role.admin)
    survivor = await make_customer(client, admin, name="甲公司", phone="13812345678")
    merged = await make_customer(client, admin, name="甲公司（中国）有限公司")
    r = await client.post(
        "/api/v1/interactions",
        json={
            "customer_code": merged["code"],
            "channel": "visit",
            "kind": "purchase",
            "direction": "inbound",
            "amount": "120000",
            "products": ["MES"],
            "next_action": {"title": "送货", "due_at": "2030-01-01T10:00:00+08:00"},
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    done = await client.post(
        "/api/v1/customers/merge",
        json={"survivor": survivor["code"], "merged": [merged["code"]]},
        headers=admin.headers,
    )
    body = done.json()
    # The purchase now counts for the survivor: its tiers were recomputed in the merge.
    assert body["value_tier"] == "high_value" and body["lifecycle"] == "new"

    async def owners(path: str) -> set[str]:
        items = (await client.get(path, headers=admin.headers)).json()["items"]
        return {i["customer_code"] for i in items}

    assert await owners("/api/v1/interactions") == {survivor["code"]}
    assert await owners("/api/v1/tasks?scope=all") == {survivor["code"]}
    undo = await client.post(
        f"/api/v1/customers/merges/{body['merge_id']}/undo", headers=admin.headers
    )
    assert undo.status_code == 200
    assert undo.json()["value_tier"] != "high_value"
    assert await owners("/api/v1/interactions") == {merged["code"]}
    assert await owners("/api/v1/tasks?scope=all") == {merged["code"]}
