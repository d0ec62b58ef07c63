"""Tags: categories, uniqueness, tagging one customer, filters by tag, bulk tagging."""

from __future__ import annotations

import time
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import tokens
from app.auth.permissions import ROLE_SCOPES, Role
from app.core.config import get_settings
from tests import factories
from tests.factories import insert_customer, make_user, seed_tag_categories

API = "/api/v1"


async def _tag(
    client: httpx.AsyncClient, user: factories.TestUser, name: str, category: str = "customer_trait"
) -> dict[str, Any]:
    r = await client.post(
        f"{API}/tags", json={"category": category, "name": name}, headers=user.headers
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _put(
    client: httpx.AsyncClient, user: factories.TestUser, code: str, tag_id: int
) -> httpx.Response:
    return await client.put(f"{API}/customers/{code}/tags/{tag_id}", headers=user.headers)


async def _codes(client: httpx.AsyncClient, user: factories.TestUser, query: str) -> set[str]:
    r = await client.get(f"{API}/customers?limit=200&{query}", headers=user.headers)
    assert r.status_code == 200, r.text
    return {c["code"] for c in r.json()["items"]}


async def _audit_count(engine: AsyncEngine, action: str) -> int:
    async with engine.connect() as conn:
        n = await conn.scalar(
            text("SELECT count(*) FROM audit_log WHERE action = :a"), {"a": action}
        )
    return int(n or 0)


# ---- categories ------------------------------------------------------------------------------


async def test_default_categories_are_listed(client: httpx.AsyncClient, engine: AsyncEngine):
    await seed_tag_categories(engine)
    user = await make_user(engine, role=Role.service)
    r = await client.get(f"{API}/tag-categories", headers=user.headers)
    assert r.status_code == 200
    got = {c["code"]: (c["label"], c["builtin"]) for c in r.json()}
    assert got == {
        "need_type": ("需求类型", True),
        "decision_stage": ("决策阶段", True),
        "customer_trait": ("客户特征", True),
        "campaign": ("来源活动", True),
    }


async def test_categories_are_added_renamed_and_deleted(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    await seed_tag_categories(engine)
    admin = await make_user(engine, role=Role.admin)
    r = await client.post(
        f"{API}/tag-categories",
        json={"code": "industry_event", "label": "行业活动"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["builtin"] is False
    dup = await client.post(
        f"{API}/tag-categories",
        json={"code": "industry_event", "label": "x"},
        headers=admin.headers,
    )
    assert dup.status_code == 409
    bad = await client.post(
        f"{API}/tag-categories", json={"code": "Bad Code", "label": "x"}, headers=admin.headers
    )
    assert bad.status_code == 422

    renamed = await client.patch(
        f"{API}/tag-categories/industry_event", json={"label": "展会活动"}, headers=admin.headers
    )
    assert renamed.status_code == 200 and renamed.json()["label"] == "展会活动"

    await _tag(client, admin, "2026春季展", category="industry_event")
    in_use = await client.delete(f"{API}/tag-categories/industry_event", headers=admin.headers)
    assert in_use.status_code == 409
    builtin = await client.delete(f"{API}/tag-categories/need_type", headers=admin.headers)
    assert builtin.status_code == 409

    await client.post(
        f"{API}/tag-categories", json={"code": "empty_one", "label": "空"}, headers=admin.headers
    )
    gone = await client.delete(f"{API}/tag-categories/empty_one", headers=admin.headers)
    assert gone.status_code == 204
    missing = await client.delete(f"{API}/tag-categories/empty_one", headers=admin.headers)
    assert missing.status_code == 404


# ---- tags ------------------------------------------------------------------------------------


async def test_tag_names_are_unique_per_category_ignoring_case(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    await seed_tag_categories(engine)
    marketing = await make_user(engine, role=Role.marketing)
    vip = await _tag(client, marketing, "VIP")
    assert vip["category"] == "customer_trait" and vip["category_label"] == "客户特征"

    dup = await client.post(
        f"{API}/tags", json={"category": "customer_trait", "name": "vip"}, headers=marketing.headers
    )
    assert dup.status_code == 409
    assert dup.json()["errors"][0]["field"] == "name"
    # The same name in another category is another tag.
    other = await _tag(client, marketing, "vip", category="campaign")
    assert other["id"] != vip["id"]

    unknown = await client.post(
        f"{API}/tags", json={"category": "nope", "name": "x"}, headers=marketing.headers
    )
    assert unknown.status_code == 422
    for name in ("a,b", "甲、乙", "x;y", "", "长" * 41):
        r = await client.post(
            f"{API}/tags", json={"category": "campaign", "name": name}, headers=marketing.headers
        )
        assert r.status_code == 422, name
    extra = await client.post(
        f"{API}/tags",
        json={"category": "campaign", "name": "ok", "id": 5},
        headers=marketing.headers,
    )
    assert extra.status_code == 422


async def test_tags_are_renamed_moved_and_deleted(client: httpx.AsyncClient, engine: AsyncEngine):
    await seed_tag_categories(engine)
    admin = await make_user(engine, role=Role.admin)
    a = await _tag(client, admin, "ERP", category="need_type")
    b = await _tag(client, admin, "CRM", category="need_type")

    clash = await client.patch(f"{API}/tags/{b['id']}", json={"name": "erp"}, headers=admin.headers)
    assert clash.status_code == 409
    moved = await client.patch(
        f"{API}/tags/{b['id']}",
        json={"category": "campaign", "description": "moved"},
        headers=admin.headers,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["category"] == "campaign" and moved.json()["description"] == "moved"
    # Now in another category, the name no longer clashes.
    renamed = await client.patch(
        f"{API}/tags/{b['id']}", json={"name": "erp"}, headers=admin.headers
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "erp"

    code = await insert_customer(engine)
    assert (await _put(client, admin, code, a["id"])).status_code == 200
    deleted = await client.delete(f"{API}/tags/{a['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    customer = (await client.get(f"{API}/customers/{code}", headers=admin.headers)).json()
    assert customer["tags"] == []
    async with engine.connect() as conn:
        changes = await conn.scalar(
            text("SELECT changes FROM audit_log WHERE action = 'tag.delete'")
        )
    assert changes["customers"] == {"before": 1, "after": 0}
    assert (
        await client.patch(f"{API}/tags/{a['id']}", json={}, headers=admin.headers)
    ).status_code == 404
    assert (
        await client.patch(f"{API}/tags/abc", json={}, headers=admin.headers)
    ).status_code == 404


async def test_list_tags_pages_filters_and_counts_visible_customers(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    await seed_tag_categories(engine)
    admin = await make_user(engine, role=Role.admin)
    rep = await make_user(engine, role=Role.sales)
    other = await make_user(engine, role=Role.sales)
    names = ["甲", "乙", "丙", "丁", "戊"]
    tags = [await _tag(client, admin, n) for n in names]
    await _tag(client, admin, "展会", category="campaign")

    mine = await insert_customer(engine, owner_id=rep.id)
    theirs = await insert_customer(engine, owner_id=other.id)
    for code in (mine, theirs):
        assert (await _put(client, admin, code, tags[0]["id"])).status_code == 200

    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        url = f"{API}/tags?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=rep.headers)).json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 6
    assert [t["category"] for t in seen] == sorted(t["category"] for t in seen)
    assert len({t["id"] for t in seen}) == 6

    only = (await client.get(f"{API}/tags?category=campaign", headers=rep.headers)).json()
    assert [t["name"] for t in only["items"]] == ["展会"]
    found = (await client.get(f"{API}/tags?q=展", headers=rep.headers)).json()
    assert [t["name"] for t in found["items"]] == ["展会"]

    def count(page: dict[str, Any]) -> int:
        return next(t["customer_count"] for t in page["items"] if t["id"] == tags[0]["id"])

    as_rep = (await client.get(f"{API}/tags?with_count=true", headers=rep.headers)).json()
    as_admin = (await client.get(f"{API}/tags?with_count=true", headers=admin.headers)).json()
    assert count(as_rep) == 1  # the other rep's customer is not counted for this rep
    assert count(as_admin) == 2
    plain = (await client.get(f"{API}/tags", headers=rep.headers)).json()
    assert plain["items"][0]["customer_count"] is None


# ---- a customer's tags -----------------------------------------------------------------------


async def test_tag_and_untag_a_customer(client: httpx.AsyncClient, engine: AsyncEngine):
    await seed_tag_categories(engine)
    admin = await make_user(engine, role=Role.admin)
    rep = await make_user(engine, role=Role.sales)
    vip = await _tag(client, admin, "VIP")
    erp = await _tag(client, admin, "ERP", category="need_type")
    code = await insert_customer(engine, owner_id=rep.id)

    first = await _put(client, rep, code, vip["id"])
    assert first.status_code == 200, first.text
    assert first.json() == {
        "code": code,
        "tags": [{"id": vip["id"], "name": "VIP", "category": "customer_trait"}],
    }
    again = await _put(client, rep, code, vip["id"])  # idempotent
    assert again.status_code == 200 and again.json() == first.json()
    assert await _audit_count(engine, "customer.tag") == 1
    await _put(client, rep, code, erp["id"])

    one = (await client.get(f"{API}/customers/{code}", headers=rep.headers)).json()
    # Ordered by category code, then name.
    assert [t["name"] for t in one["tags"]] == ["VIP", "ERP"]
    listed = (await client.get(f"{API}/customers", headers=rep.headers)).json()
    assert listed["items"][0]["tags"] == one["tags"]
    assert one["version"] == 1  # tagging is a relation: the record's version is unchanged

    removed = await client.delete(f"{API}/customers/{code}/tags/{vip['id']}", headers=rep.headers)
    assert removed.status_code == 204
    removed_again = await client.delete(
        f"{API}/customers/{code}/tags/{vip['id']}", headers=rep.headers
    )
    assert removed_again.status_code == 204
    assert await _audit_count(engine, "customer.untag") == 1
    left = (await client.get(f"{API}/customers/{code}", headers=rep.headers)).json()
    assert [t["id"] for t in left["tags"]] == [erp["id"]]

    unknown = await _put(client, rep, code, 999999)
    assert unknown.status_code == 404
    # A new customer starts without tags.
    created = await client.post(f"{API}/customers", json={"name": "新客户"}, headers=rep.headers)
    assert created.status_code == 201 and created.json()["tags"] == []


async def test_customer_writes_return_the_tags(client: httpx.AsyncClient, engine: AsyncEngine):
    """Update, assign, delete and restore read the row back with its tags."""
    await seed_tag_categories(engine)
    admin = await make_user(engine, role=Role.admin)
    vip = await _tag(client, admin, "VIP")
    created = await client.post(f"{API}/customers", json={"name": "甲公司"}, headers=admin.headers)
    code = created.json()["code"]
    await _put(client, admin, code, vip["id"])
    expected = [{"id": vip["id"], "name": "VIP", "category": "customer_trait"}]

    patched = await client.patch(
        f"{API}/customers/{code}", json={"name": "甲公司（新）"}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["tags"] == expected and patched.json()["version"] == 2
    assigned = await client.post(
        f"{API}/customers/{code}/assign", json={"owner_id": admin.id}, headers=admin.headers
    )
    assert assigned.status_code == 200 and assigned.json()["tags"] == expected
    assert (
        await client.delete(f"{API}/customers/{code}", headers=admin.headers)
    ).status_code == 204
    restored = await client.post(f"{API}/customers/{code}/restore", headers=admin.headers)
    assert restored.status_code == 200 and restored.json()["tags"] == expected
    async with engine.connect() as conn:
        changes = await conn.scalar(
            text("SELECT changes FROM audit_log WHERE action = 'customer.update'")
        )
    assert set(changes) == {"name"}  # tags are not part of the customer's audited fields


async def test_another_reps_customer_is_404_on_tag_routes(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    await seed_tag_categories(engine)
    admin = await make_user(engine, role=Role.admin)
    rep = await make_user(engine, role=Role.sales)
    other = await make_user(engine, role=Role.sales)
    tag = await _tag(client, admin, "VIP")
    theirs = await insert_customer(engine, owner_id=other.id)
    pooled = await insert_customer(engine, owner_id=None)

    put = await _put(client, rep, theirs, tag["id"])
    assert put.status_code == 404 and put.headers["content-type"] == "application/problem+json"
    delete = await client.delete(f"{API}/customers/{theirs}/tags/{tag['id']}", headers=rep.headers)
    assert delete.status_code == 404
    assert (await _put(client, rep, "C20990101999", tag["id"])).status_code == 404
    # A shared-pool customer is visible but must be claimed before it is changed.
    assert (await _put(client, rep, pooled, tag["id"])).status_code == 403
    # Nothing was written.
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM customer_tags")) == 0


# ---- filters ---------------------------------------------------------------------------------


async def test_customer_list_filters_by_any_or_all_tags(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    await seed_tag_categories(engine)
    admin = await make_user(engine, role=Role.admin)
    vip = await _tag(client, admin, "VIP")
    erp = await _tag(client, admin, "ERP", category="need_type")
    year = await _tag(client, admin, "2026", category="campaign")
    both = await insert_customer(engine, name="both")
    only_vip = await insert_customer(engine, name="only vip")
    only_erp = await insert_customer(engine, name="only erp")
    none = await insert_customer(engine, name="none")
    campaign = await insert_customer(engine, name="campaign")
    for code, tag in ((both, vip), (both, erp), (only_vip, vip), (only_erp, erp), (campaign, year)):
        assert (await _put(client, admin, code, tag["id"])).status_code == 200

    assert await _codes(client, admin, f"tag={vip['id']}") == {both, only_vip}
    any_ = {both, only_vip, only_erp}
    assert await _codes(client, admin, f"tag={vip['id']}&tag={erp['id']}") == any_
    assert await _codes(client, admin, f"tag={vip['id']},{erp['id']}&tag_mode=any") == any_
    assert await _codes(client, admin, f"tag={vip['id']}&tag={erp['id']}&tag_mode=all") == {both}
    # Names, in any letter case, and mixed with ids.
    assert await _codes(client, admin, "tag=vip&tag=erp&tag_mode=all") == {both}
    assert await _codes(client, admin, f"tag=Vip&tag={erp['id']}") == any_
    # A tag named like a number is found by its name as well as by id.
    assert await _codes(client, admin, "tag=2026") == {campaign}
    assert await _codes(client, admin, "tag=nothing") == set()
    assert await _codes(client, admin, "tag=99999999999999999999999") == set()
    assert none not in await _codes(client, admin, "tag=vip")

    counted = await client.get(
        f"{API}/customers?tag=vip&tag=erp&tag_mode=all&with_count=true", headers=admin.headers
    )
    assert counted.json()["count"] == 1
    bad = await client.get(f"{API}/customers?tag=vip&tag_mode=some", headers=admin.headers)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "tag_mode"


async def test_tag_filter_respects_visibility(client: httpx.AsyncClient, engine: AsyncEngine):
    await seed_tag_categories(engine)
    admin = await make_user(engine, role=Role.admin)
    rep = await make_user(engine, role=Role.sales)
    other = await make_user(engine, role=Role.sales)
    vip = await _tag(client, admin, "VIP")
    mine = await insert_customer(engine, owner_id=rep.id)
    theirs = await insert_customer(engine, owner_id=other.id)
    for code in (mine, theirs):
        await _put(client, admin, code, vip["id"])
    assert await _codes(client, rep, "tag=VIP") == {mine}
    assert await _codes(client, admin, "tag=VIP") == {mine, theirs}


# ---- bulk ------------------------------------------------------------------------------------


async def test_bulk_by_codes_is_idempotent_and_audited_once(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    await seed_tag_categories(engine)
    marketing = await make_user(engine, role=Role.marketing)
    tag = await _tag(client, marketing, "双十一", category="campaign")
    codes = [await insert_customer(engine, name=f"客户{i}") for i in range(5)]
    deleted = await insert_customer(engine)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE customers SET deleted_at = now() WHERE code = :c"), {"c": deleted}
        )
    url = f"{API}/tags/{tag['id']}/bulk"
    body = {"action": "add", "codes": [*codes[:3], codes[0], deleted, "C20990101999"]}

    first = await client.post(url, json=body, headers=marketing.headers)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "tag_id": tag["id"],
        "action": "add",
        "matched": 3,
        "changed": 3,
        "unmatched_codes": 2,
    }
    again = await client.post(url, json=body, headers=marketing.headers)
    assert again.json()["changed"] == 0 and again.json()["matched"] == 3
    assert await _audit_count(engine, "tag.bulk_add") == 1
    async with engine.connect() as conn:
        changes = await conn.scalar(
            text("SELECT changes FROM audit_log WHERE action = 'tag.bulk_add'")
        )
    assert changes["changed"] == 3 and changes["codes"] == 5

    more = await client.post(url, json={"action": "add", "codes": codes}, headers=marketing.headers)
    assert more.json()["changed"] == 2
    assert await _codes(client, marketing, f"tag={tag['id']}") == set(codes)

    removed = await client.post(
        url, json={"action": "remove", "codes": codes[:2]}, headers=marketing.headers
    )
    assert removed.json()["changed"] == 2
    removed_again = await client.post(
        url, json={"action": "remove", "codes": codes[:2]}, headers=marketing.headers
    )
    assert removed_again.json()["changed"] == 0
    assert await _audit_count(engine, "tag.bulk_remove") == 1
    assert await _codes(client, marketing, f"tag={tag['id']}") == set(codes[2:])


async def test_bulk_request_validation(client: httpx.AsyncClient, engine: AsyncEngine):
    await seed_tag_categories(engine)
    admin = await make_user(engine, role=Role.admin)
    tag = await _tag(client, admin, "VIP")
    url = f"{API}/tags/{tag['id']}/bulk"
    for body in (
        {"action": "add"},
        {"action": "add", "codes": ["C1"], "segment_id": 1},
        {"action": "add", "codes": []},
        {"action": "tag", "codes": ["C1"]},
        {"action": "add", "codes": ["C1"], "extra": 1},
    ):
        r = await client.post(url, json=body, headers=admin.headers)
        assert r.status_code == 422, body
    missing_segment = await client.post(
        url, json={"action": "add", "segment_id": 999999}, headers=admin.headers
    )
    assert missing_segment.status_code == 422
    assert missing_segment.json()["errors"][0]["field"] == "segment_id"
    missing_tag = await client.post(
        f"{API}/tags/999999/bulk", json={"action": "add", "codes": ["C1"]}, headers=admin.headers
    )
    assert missing_tag.status_code == 404


async def test_bulk_touches_only_customers_the_caller_may_change(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    """A sales rep granted tags:write (no role has both) bulk-tags only their own customers."""
    await seed_tag_categories(engine)
    admin = await make_user(engine, role=Role.admin)
    rep = await make_user(engine, role=Role.sales)
    other = await make_user(engine, role=Role.sales)
    token = tokens.issue_access(
        get_settings(),
        subject=f"user:{rep.id}",
        role=Role.sales,
        scopes=sorted(ROLE_SCOPES[Role.sales] | {"tags:write"}),
    )
    headers = {"Authorization": f"Bearer {token}"}
    tag = await _tag(client, admin, "VIP")
    mine = await insert_customer(engine, owner_id=rep.id)
    pooled = await insert_customer(engine, owner_id=None)
    theirs = await insert_customer(engine, owner_id=other.id)

    by_codes = await client.post(
        f"{API}/tags/{tag['id']}/bulk",
        json={"action": "add", "codes": [mine, pooled, theirs]},
        headers=headers,
    )
    assert by_codes.json()["matched"] == 1 and by_codes.json()["changed"] == 1

    segment = await client.post(
        f"{API}/segments", json={"name": "全部", "shared": True}, headers=admin.headers
    )
    await client.post(
        f"{API}/tags/{tag['id']}/bulk", json={"action": "remove", "codes": [mine]}, headers=headers
    )
    by_segment = await client.post(
        f"{API}/tags/{tag['id']}/bulk",
        json={"action": "add", "segment_id": segment.json()["id"]},
        headers=headers,
    )
    assert by_segment.json()["matched"] == 1 and by_segment.json()["changed"] == 1
    assert await _codes(client, admin, "tag=VIP") == {mine}


async def test_bulk_tag_of_100000_customers_by_segment(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    await seed_tag_categories(engine)
    admin = await make_user(engine, role=Role.admin)
    tag = await _tag(client, admin, "大促", category="campaign")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO customers (code, name) "
                "SELECT 'C2026' || lpad(g::text, 7, '0'), '客户' || g "
                "FROM generate_series(1, 100000) AS g"
            )
        )
        await conn.execute(text("ANALYZE customers"))
    segment = await client.post(f"{API}/segments", json={"name": "全部客户"}, headers=admin.headers)
    url = f"{API}/tags/{tag['id']}/bulk"
    body = {"action": "add", "segment_id": segment.json()["id"]}

    started = time.perf_counter()
    first = await client.post(url, json=body, headers=admin.headers)
    elapsed = time.perf_counter() - started
    assert first.status_code == 200, first.text
    assert first.json()["matched"] == 100_000 and first.json()["changed"] == 100_000
    print(f"\nbulk tag of 100,000 customers: {elapsed:.2f}s")

    started = time.perf_counter()
    again = await client.post(url, json=body, headers=admin.headers)
    print(f"re-run (no change): {time.perf_counter() - started:.2f}s")
    assert again.json()["changed"] == 0
    assert await _audit_count(engine, "tag.bulk_add") == 1
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM customer_tags")) == 100_000

    counted = await client.get(f"{API}/segments/{segment.json()['id']}", headers=admin.headers)
    assert counted.json()["count"] == 100_000
    tagged = await client.get(
        f"{API}/customers?tag={tag['id']}&limit=1&with_count=true", headers=admin.headers
    )
    assert tagged.json()["count"] == 100_000

    started = time.perf_counter()
    removed = await client.post(url, json={**body, "action": "remove"}, headers=admin.headers)
    print(f"bulk untag of 100,000 customers: {time.perf_counter() - started:.2f}s")
    assert removed.json()["changed"] == 100_000

    # By codes: the whole list travels as one array parameter, never 50,000 bind parameters.
    codes = [f"C2026{n:07d}" for n in range(1, 50_001)]
    started = time.perf_counter()
    by_codes = await client.post(url, json={"action": "add", "codes": codes}, headers=admin.headers)
    print(f"bulk tag of 50,000 codes: {time.perf_counter() - started:.2f}s")
    assert by_codes.status_code == 200, by_codes.text
    assert by_codes.json()["changed"] == 50_000 and by_codes.json()["unmatched_codes"] == 0
    too_many = await client.post(
        url, json={"action": "add", "codes": [*codes, "C20990101001"]}, headers=admin.headers
    )
    assert too_many.status_code == 422
