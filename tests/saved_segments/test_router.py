"""Saved segments: CRUD, the filter round trip, members equal to the list, visibility per role."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from tests import factories
from tests.factories import insert_customer, make_user, seed_tag_categories

API = "/api/v1"


async def _segment(
    client: httpx.AsyncClient,
    user: factories.TestUser,
    name: str,
    filter_: dict[str, Any] | None = None,
    *,
    shared: bool = False,
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "shared": shared}
    if filter_ is not None:
        body["filter"] = filter_
    r = await client.post(f"{API}/segments", json=body, headers=user.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _all_codes(
    client: httpx.AsyncClient, user: factories.TestUser, url: str, *, sort: str | None = None
) -> list[str]:
    """Every code the endpoint lists, following cursors three at a time."""
    codes: list[str] = []
    cursor = None
    sep = "&" if "?" in url else "?"
    while True:
        page_url = f"{url}{sep}limit=3" + (f"&sort={sort}" if sort else "")
        if cursor:
            page_url += f"&cursor={cursor}"
        r = await client.get(page_url, headers=user.headers)
        assert r.status_code == 200, r.text
        page = r.json()
        codes.extend(c["code"] for c in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return codes


async def _tag(
    client: httpx.AsyncClient, user: factories.TestUser, name: str, category: str
) -> int:
    r = await client.post(
        f"{API}/tags", json={"category": category, "name": name}, headers=user.headers
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


# ---- CRUD ------------------------------------------------------------------------------------


async def test_create_read_update_delete(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine, role=Role.sales)
    created = await _segment(
        client, rep, "高价值活跃", {"tier": ["high_value"], "status": ["合作中"], "tag": ["VIP"]}
    )
    assert created["owner"] == f"user:{rep.id}" and created["shared"] is False
    # Stored as the list's filter: labels resolved to codes, every key present on read.
    assert created["filter"]["tier"] == ["high_value"]
    assert created["filter"]["status"] == ["active"]
    assert created["filter"]["tag"] == ["VIP"] and created["filter"]["tag_mode"] == "any"
    async with engine.connect() as conn:
        stored = await conn.scalar(text("SELECT filter FROM saved_segments"))
    assert stored == {"tier": ["high_value"], "status": ["active"], "tag": ["VIP"]}

    got = await client.get(f"{API}/segments/{created['id']}", headers=rep.headers)
    assert got.status_code == 200 and got.json()["count"] == 0

    patched = await client.patch(
        f"{API}/segments/{created['id']}",
        json={"name": "重点客户", "shared": True, "filter": {"lifecycle": ["potential"]}},
        headers=rep.headers,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["name"] == "重点客户" and body["shared"] is True
    assert body["filter"]["lifecycle"] == ["potential"] and body["filter"]["tier"] == []
    async with engine.connect() as conn:
        actions = (await conn.scalars(text("SELECT action FROM audit_log ORDER BY id"))).all()
    assert actions == ["segment.create", "segment.update"]

    same = await client.patch(
        f"{API}/segments/{created['id']}", json={"name": "重点客户"}, headers=rep.headers
    )
    assert same.status_code == 200

    deleted = await client.delete(f"{API}/segments/{created['id']}", headers=rep.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"{API}/segments/{created['id']}", headers=rep.headers)
    assert gone.status_code == 404


async def test_invalid_segments_are_rejected(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine, role=Role.sales)
    for body in (
        {"name": "x", "filter": {"nope": 1}},
        {"name": "x", "filter": {"tier": ["platinum"]}},
        {"name": "x", "filter": {"tag_mode": "some"}},
        {"name": ""},
        {"name": "x", "owner": "user:1"},
        {"name": "x", "filter": {"custom": {"unknown_field": "1"}}},
    ):
        r = await client.post(f"{API}/segments", json=body, headers=rep.headers)
        assert r.status_code == 422, body
    custom = await client.post(
        f"{API}/segments",
        json={"name": "x", "filter": {"custom": {"unknown_field": "1"}}},
        headers=rep.headers,
    )
    assert custom.json()["errors"][0]["field"] == "filter.custom.unknown_field"

    await _segment(client, rep, "我的客群")
    dup = await client.post(f"{API}/segments", json={"name": "我的客群"}, headers=rep.headers)
    assert dup.status_code == 409
    # Another owner may use the same name.
    other = await make_user(engine, role=Role.sales)
    await _segment(client, other, "我的客群")


async def test_segment_ids_are_digits_only(client: httpx.AsyncClient, engine: AsyncEngine):
    """Paths like /segments/summary belong to the segmentation feature, never to these routes."""
    admin = await make_user(engine, role=Role.admin)
    for path in ("abc", "1abc"):
        r = await client.get(f"{API}/segments/{path}", headers=admin.headers)
        assert r.status_code == 404, path
    # The segmentation feature's own paths reach it, not the saved-segment routes.
    summary = await client.get(f"{API}/segments/summary", headers=admin.headers)
    rules = await client.get(f"{API}/segments/rules", headers=admin.headers)
    assert summary.status_code == 200 and "value_tier" in summary.text
    assert rules.status_code == 200
    r = await client.patch(f"{API}/segments/recompute", json={}, headers=admin.headers)
    assert r.status_code in (404, 405)


# ---- members equal the list ------------------------------------------------------------------


FILTERS: list[dict[str, Any]] = [
    {},
    {"tier": ["high_value", "potential"]},
    {"status": ["active"], "kind": ["enterprise"]},
    {"owner": ["none"]},
    {"owner": ["me"]},
    {"region": ["上海"]},
    {"q": "华为"},
    {"tag": ["VIP"]},
    {"tag": ["VIP", "ERP"], "tag_mode": "all"},
    {"tag": ["vip", "erp"], "tag_mode": "any", "status": ["active"]},
    {"flag": ["to_verify"]},
]


def _query(f: dict[str, Any]) -> str:
    parts = []
    for key, value in f.items():
        for v in value if isinstance(value, list) else [value]:
            parts.append(f"{key}={v}")
    return "&".join(parts)


@pytest.mark.parametrize("filter_", FILTERS, ids=[_query(f) or "all" for f in FILTERS])
async def test_members_equal_the_list_with_the_same_filter(
    client: httpx.AsyncClient, engine: AsyncEngine, filter_: dict[str, Any]
):
    await seed_tag_categories(engine)
    admin = await make_user(engine, role=Role.admin)
    rep = await make_user(engine, role=Role.sales)
    other = await make_user(engine, role=Role.sales)
    vip = await _tag(client, admin, "VIP", "customer_trait")
    erp = await _tag(client, admin, "ERP", "need_type")
    owners = [rep.id, other.id, None]
    tiers = ["high_value", "potential", "normal", "churn_risk"]
    names = ["华为技术有限公司", "上海贸易", "北京科技", "深圳华为代理商", "杭州电商"]
    codes = []
    for i in range(24):
        codes.append(
            await insert_customer(
                engine,
                name=f"{names[i % 5]}{i}",
                search_text=f"{names[i % 5]}{i}",
                owner_id=owners[i % 3],
                value_tier=tiers[i % 4],
                cooperation_status="active" if i % 2 else "not_started",
                kind="enterprise" if i % 5 else "individual",
                province="上海" if i % 4 == 0 else "广东",
                flags=["to_verify"] if i % 6 == 0 else [],
            )
        )
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO customer_tags (customer_id, tag_id) "
                "SELECT id, CAST(:vip AS bigint) FROM customers WHERE id % 2 = 0 UNION ALL "
                "SELECT id, CAST(:erp AS bigint) FROM customers WHERE id % 3 = 0"
            ),
            {"vip": vip, "erp": erp},
        )

    segment = await _segment(client, admin, "对照", filter_, shared=True)
    for user in (admin, rep):
        for sort in (None, "name", "-contract_amount"):
            members = await _all_codes(
                client, user, f"{API}/segments/{segment['id']}/customers", sort=sort
            )
            listed = await _all_codes(client, user, f"{API}/customers?{_query(filter_)}", sort=sort)
            assert members == listed
        detail = await client.get(f"{API}/segments/{segment['id']}", headers=user.headers)
        assert detail.json()["count"] == len(listed)
        with_count = await client.get(
            f"{API}/segments/{segment['id']}/customers?with_count=true&limit=1",
            headers=user.headers,
        )
        assert with_count.json()["count"] == len(listed)
    if not filter_:
        assert len(await _all_codes(client, admin, f"{API}/customers")) == 24


async def test_members_are_the_full_customer_view(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    marketing = await make_user(engine, role=Role.marketing)
    await insert_customer(engine, name="甲", phone="+8613812345678")
    segment = await _segment(client, admin, "全部", shared=True)
    page = (
        await client.get(f"{API}/segments/{segment['id']}/customers", headers=marketing.headers)
    ).json()
    listed = (await client.get(f"{API}/customers", headers=marketing.headers)).json()
    assert page == listed
    assert page["items"][0]["phone"] == "138****5678"  # masked for marketing, as in the list
    assert page["items"][0]["tags"] == []


# ---- visibility ------------------------------------------------------------------------------


async def test_shared_segment_members_follow_each_callers_visibility(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    manager = await make_user(engine, role=Role.manager)
    rep = await make_user(engine, role=Role.sales)
    other = await make_user(engine, role=Role.sales)
    mine = await insert_customer(engine, owner_id=rep.id, value_tier="high_value")
    theirs = await insert_customer(engine, owner_id=other.id, value_tier="high_value")
    pooled = await insert_customer(engine, owner_id=None, value_tier="high_value")
    await insert_customer(engine, owner_id=rep.id, value_tier="normal")
    segment = await _segment(client, manager, "高价值", {"tier": ["high_value"]}, shared=True)
    url = f"{API}/segments/{segment['id']}"

    expected = [
        (manager, {mine, theirs, pooled}),
        (rep, {mine, pooled}),
        (other, {theirs, pooled}),
    ]
    for role in (Role.admin, Role.service, Role.marketing, Role.data_admin):
        expected.append((await make_user(engine, role=role), {mine, theirs, pooled}))
    for user, codes in expected:
        assert set(await _all_codes(client, user, f"{url}/customers")) == codes, user.role
        detail = await client.get(url, headers=user.headers)
        assert detail.status_code == 200
        assert detail.json()["count"] == len(codes), user.role


async def test_private_segments_are_their_owners_own(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin = await make_user(engine, role=Role.admin)
    manager = await make_user(engine, role=Role.manager)
    rep = await make_user(engine, role=Role.sales)
    other = await make_user(engine, role=Role.sales)
    private = await _segment(client, rep, "我的私有客群", {"owner": ["me"]})
    shared = await _segment(client, rep, "共享客群", {"owner": ["me"]}, shared=True)
    managers = await _segment(client, manager, "经理私有")

    def ids(page: httpx.Response) -> set[int]:
        return {s["id"] for s in page.json()["items"]}

    assert ids(await client.get(f"{API}/segments", headers=rep.headers)) == {
        private["id"],
        shared["id"],
    }
    assert ids(await client.get(f"{API}/segments", headers=other.headers)) == {shared["id"]}
    assert ids(await client.get(f"{API}/segments", headers=admin.headers)) == {
        private["id"],
        shared["id"],
        managers["id"],
    }
    assert ids(await client.get(f"{API}/segments?shared=false", headers=rep.headers)) == {
        private["id"]
    }

    for path in ("", "/customers"):
        r = await client.get(f"{API}/segments/{private['id']}{path}", headers=other.headers)
        assert r.status_code == 404, path
        r = await client.get(f"{API}/segments/{private['id']}{path}", headers=admin.headers)
        assert r.status_code == 200, path
    assert (
        await client.patch(
            f"{API}/segments/{private['id']}", json={"name": "x"}, headers=other.headers
        )
    ).status_code == 404
    # A shared segment is visible to all, but only its owner (or an admin) changes it.
    forbidden = await client.patch(
        f"{API}/segments/{shared['id']}", json={"name": "改名"}, headers=other.headers
    )
    assert forbidden.status_code == 403
    assert (
        await client.delete(f"{API}/segments/{shared['id']}", headers=manager.headers)
    ).status_code == 403
    assert (
        await client.patch(
            f"{API}/segments/{shared['id']}",
            json={"description": "由管理员修改"},
            headers=admin.headers,
        )
    ).status_code == 200

    # A segment of someone else cannot be used for bulk tagging either.
    await seed_tag_categories(engine)
    tag = await _tag(client, admin, "VIP", "customer_trait")
    bulk = await client.post(
        f"{API}/tags/{tag}/bulk",
        json={"action": "add", "segment_id": managers["id"]},
        headers=(await make_user(engine, role=Role.marketing)).headers,
    )
    assert bulk.status_code == 422


async def test_owner_me_in_a_shared_segment_means_the_reader(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    rep = await make_user(engine, role=Role.sales)
    other = await make_user(engine, role=Role.sales)
    mine = await insert_customer(engine, owner_id=rep.id)
    theirs = await insert_customer(engine, owner_id=other.id)
    segment = await _segment(client, rep, "我的客户", {"owner": ["me"]}, shared=True)
    url = f"{API}/segments/{segment['id']}/customers"
    assert await _all_codes(client, rep, url) == [mine]
    assert await _all_codes(client, other, url) == [theirs]


async def test_members_need_customers_read(client: httpx.AsyncClient, engine: AsyncEngine):
    from app.auth import tokens
    from app.core.config import get_settings

    admin = await make_user(engine, role=Role.admin)
    await insert_customer(engine)
    segment = await _segment(client, admin, "全部", shared=True)
    token = tokens.issue_access(
        get_settings(), subject="service:1", role=None, scopes=["segments:read"]
    )
    headers = {"Authorization": f"Bearer {token}"}
    detail = await client.get(f"{API}/segments/{segment['id']}", headers=headers)
    assert detail.status_code == 200 and detail.json()["count"] is None
    members = await client.get(f"{API}/segments/{segment['id']}/customers", headers=headers)
    assert members.status_code == 403
