"""Customer list: search (substring, pinyin, typos, phones), filters, sorting, keyset pages."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from tests.factories import TestUser, make_customer, make_user


async def _codes(client: httpx.AsyncClient, user: TestUser, **params: Any) -> list[str]:
    r = await client.get("/api/v1/customers", params=params, headers=user.headers)
    assert r.status_code == 200, r.text
    return [c["code"] for c in r.json()["items"]]


async def _names(client: httpx.AsyncClient, user: TestUser, **params: Any) -> list[str]:
    r = await client.get("/api/v1/customers", params=params, headers=user.headers)
    assert r.status_code == 200, r.text
    return [c["name"] for c in r.json()["items"]]


async def _seed_search(client: httpx.AsyncClient, user: TestUser) -> dict[str, dict[str, Any]]:
    made = {}
    for name, extra in [
        ("北京某某科技有限公司", {"contacts": [{"name": "张经理", "phones": ["13812345678"]}]}),
        ("上海浦东物流集团", {"phone": "021-6888 1234", "email": "ops@pudong-logistics.cn"}),
        ("Huawei Technologies", {"contacts": [{"name": "Li Wei"}]}),
        ("杭州西湖茶业", {"contacts": [{"name": "王芳"}]}),
    ]:
        made[name] = await make_customer(client, user, name=name, **extra)
    return made


async def test_search_substring_pinyin_initials_and_full_pinyin(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    m = await make_user(engine, role=Role.manager)
    await _seed_search(client, m)
    assert await _names(client, m, q="某某科技") == ["北京某某科技有限公司"]
    assert await _names(client, m, q="zjl") == ["北京某某科技有限公司"]
    assert await _names(client, m, q="wangfang") == ["杭州西湖茶业"]
    assert await _names(client, m, q="hzxhcy") == ["杭州西湖茶业"]
    assert await _names(client, m, q="张经理") == ["北京某某科技有限公司"]


async def test_search_tolerates_typos_and_ranks_best_first(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    m = await make_user(engine, role=Role.manager)
    await _seed_search(client, m)
    assert (await _names(client, m, q="huawie technologies"))[0] == "Huawei Technologies"
    assert (await _names(client, m, q="Huawei Technolgies"))[0] == "Huawei Technologies"


async def test_typo_tolerance_only_when_nothing_matches_exactly(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    m = await make_user(engine, role=Role.manager)
    await make_customer(client, m, name="Huawei Technologies")
    await make_customer(client, m, name="Huawie Technologies")
    # Exact hits are the answer: look-alikes are not mixed in.
    assert await _names(client, m, q="huawei technologies") == ["Huawei Technologies"]
    # Nothing matches exactly: the similar names are offered, the closest first.
    found = await _names(client, m, q="huawai technologies")
    assert sorted(found) == ["Huawei Technologies", "Huawie Technologies"]


async def test_search_phone_in_any_format_email_and_code(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    m = await make_user(engine, role=Role.manager)
    made = await _seed_search(client, m)
    for typed in ("138-1234-5678", "+86 138 1234 5678", "13812345678", "1234 5678"):
        assert await _names(client, m, q=typed) == ["北京某某科技有限公司"], typed
    assert await _names(client, m, q="02168881234") == ["上海浦东物流集团"]
    assert await _names(client, m, q="ops@pudong") == ["上海浦东物流集团"]
    code = made["杭州西湖茶业"]["code"]
    assert (await _names(client, m, q=code))[0] == "杭州西湖茶业"


async def test_search_respects_visibility(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    other = await make_user(engine)
    await make_customer(client, other, name="别人的客户", contacts=[{"name": "张经理"}])
    await make_customer(client, rep, name="自己的客户")
    assert await _names(client, rep, q="zjl") == []
    assert await _names(client, rep) == ["自己的客户"]
    counted = await client.get(
        "/api/v1/customers", params={"with_count": "true"}, headers=rep.headers
    )
    assert counted.json()["count"] == 1


async def test_keyset_pages_cover_everything_once(client: httpx.AsyncClient, engine: AsyncEngine):
    m = await make_user(engine, role=Role.manager)
    for i in range(7):
        await make_customer(client, m, name=f"客户{i}")
    for sort in ("-created_at", "name", "-name", "code"):
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3, "sort": sort}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/api/v1/customers", params=params, headers=m.headers)).json()
            seen.extend(c["name"] for c in page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(seen) == sorted(f"客户{i}" for i in range(7)), sort
        assert len(seen) == 7
        if sort == "name":
            assert seen == sorted(seen)
        if sort == "-name":
            assert seen == sorted(seen, reverse=True)


async def test_pages_of_two_reps_with_the_same_filters_stay_apart(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    """A filtered page's statement is compiled once and reused with each caller's id and
    cursor: two reps paging through the same filters each get all and only their own."""
    a, b = await make_user(engine), await make_user(engine)
    made = {
        rep.id: {(await make_customer(client, rep, name=f"{tag}{i}"))["code"] for i in range(5)}
        for rep, tag in ((a, "甲"), (b, "乙"))
    }
    for rep in (a, b, a):
        for sort in ("-created_at", "name", "-contract_amount"):
            seen: list[str] = []
            cursor = None
            for _ in range(5):  # three pages; a cursor that does not advance fails, not hangs
                params: dict[str, Any] = {"owner": "me", "kind": "enterprise", "limit": 2}
                params |= {"sort": sort} | ({"cursor": cursor} if cursor else {})
                r = await client.get("/api/v1/customers", params=params, headers=rep.headers)
                assert r.status_code == 200, r.text
                seen.extend(c["code"] for c in r.json()["items"])
                cursor = r.json()["next_cursor"]
                if not cursor:
                    break
            assert len(seen) == 5 and set(seen) == made[rep.id], (rep.id, sort)


async def test_sort_with_nulls_pages_correctly(client: httpx.AsyncClient, engine: AsyncEngine):
    m = await make_user(engine, role=Role.manager)
    amounts = ["500", None, "100", None, "300", "100"]
    for i, amount in enumerate(amounts):
        extra = {"contract_amount": amount} if amount else {}
        await make_customer(client, m, name=f"金额{i}", **extra)
    got: list[Any] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "sort": "-contract_amount"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/customers", params=params, headers=m.headers)).json()
        got.extend(c["contract_amount"] for c in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert got == ["500.00", "300.00", "100.00", "100.00", None, None]


async def test_search_pages_by_relevance(client: httpx.AsyncClient, engine: AsyncEngine):
    m = await make_user(engine, role=Role.manager)
    for i in range(5):
        await make_customer(client, m, name=f"科技公司{i}号")
    first = (
        await client.get("/api/v1/customers", params={"q": "科技", "limit": 2}, headers=m.headers)
    ).json()
    names = [c["name"] for c in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = (
            await client.get(
                "/api/v1/customers",
                params={"q": "科技", "limit": 2, "cursor": cursor},
                headers=m.headers,
            )
        ).json()
        names.extend(c["name"] for c in page["items"])
        cursor = page["next_cursor"]
    assert sorted(names) == sorted(f"科技公司{i}号" for i in range(5))


async def test_filters(client: httpx.AsyncClient, engine: AsyncEngine):
    m = await make_user(engine, role=Role.manager)
    rep = await make_user(engine)
    a = await make_customer(
        client,
        m,
        name="A",
        owner_id=rep.id,
        industry="65",
        source="referral",
        region={"province": "浙江省", "city": "杭州市"},
        cooperation_status="active",
        lifecycle="existing",
        kind="enterprise",
    )
    b = await make_customer(
        client,
        m,
        name="B",
        industry="13",
        source="exhibition",
        region={"province": "广东省", "city": "深圳市"},
        kind="individual",
    )
    c = await make_customer(client, m, name="C", owner_id=m.id, industry="I")
    assert await _names(client, m, owner=str(rep.id)) == ["A"]
    assert await _names(client, m, owner="none") == ["B"]
    assert await _names(client, m, owner="me") == ["C"]
    assert sorted(await _names(client, m, industry="I")) == ["A", "C"]  # section → divisions
    assert await _names(client, m, industry="C") == ["B"]
    assert await _names(client, m, source="referral") == ["A"]
    assert await _names(client, m, region="深圳市") == ["B"]
    assert await _names(client, m, region="浙江省") == ["A"]
    assert await _names(client, m, status="active") == ["A"]
    assert sorted(await _names(client, m, status="not_started,active")) == ["A", "B", "C"]
    assert await _names(client, m, lifecycle="老客户") == ["A"]
    assert await _names(client, m, kind="individual") == ["B"]
    assert set(await _names(client, m, flag="to_complete")) == {"A", "B", "C"}
    assert await _codes(client, m, tier="normal") != []
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE customers SET created_at = now() - interval '40 days', "
                "last_follow_up_at = now() - interval '35 days' WHERE code = :a"
            ),
            {"a": a["code"]},
        )
        await conn.execute(
            text("UPDATE customers SET created_at = now() - interval '40 days' WHERE code = :b"),
            {"b": b["code"]},
        )
    assert sorted(await _names(client, m, stale_days=30)) == ["A", "B"]
    assert await _names(client, m, stale_days=36) == ["B"]
    recent = await _names(client, m, created_from=c["created_at"])
    assert recent == ["C"]
    bad = await client.get("/api/v1/customers", params={"tier": "vip"}, headers=m.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"].startswith("tier")


async def test_limit_bounds(client: httpx.AsyncClient, engine: AsyncEngine):
    m = await make_user(engine, role=Role.manager)
    assert (
        await client.get("/api/v1/customers", params={"limit": 201}, headers=m.headers)
    ).status_code == 422
    assert (
        await client.get("/api/v1/customers", params={"sort": "password"}, headers=m.headers)
    ).status_code == 422


async def test_statements_compiled_once_keep_each_callers_values(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    """The hot reads compile a statement once per shape and bind each caller's values: a rep
    after another never sees the first one's customers, by list, filter or code."""
    a, b = await make_user(engine), await make_user(engine)
    mine_a = await make_customer(client, a, name="甲的客户")
    mine_b = await make_customer(client, b, name="乙的客户")
    for _ in range(2):  # the second round runs on the statements compiled in the first
        for rep, own, other in ((a, mine_a, mine_b), (b, mine_b, mine_a)):
            for params in (
                {},
                {"owner": "me"},
                {"owner": "me", "kind": "enterprise"},
                {"owner": ["me", "none"], "status": "not_started"},
            ):
                r = await client.get("/api/v1/customers", params=params, headers=rep.headers)
                assert r.status_code == 200, r.text
                assert [c["code"] for c in r.json()["items"]] == [own["code"]]
            # Naming oneself by id is the same list; naming the other rep shows nothing.
            for owner, expected in ((rep.id, [own["code"]]), ((b if rep is a else a).id, [])):
                r = await client.get(
                    "/api/v1/customers", params={"owner": str(owner)}, headers=rep.headers
                )
                assert [c["code"] for c in r.json()["items"]] == expected
            seen = await client.get(f"/api/v1/customers/{own['code']}", headers=rep.headers)
            assert seen.status_code == 200
            hidden = await client.get(f"/api/v1/customers/{other['code']}", headers=rep.headers)
            assert hidden.status_code == 404


async def test_searches_compiled_once_find_each_term(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    """Each kind of search (code, phone digits, one or two characters, text, typo-tolerant
    text) is compiled once and bound with each term: a search after another of its kind finds
    its own customers, never the previous term's, and pages on its own cursor."""
    m = await make_user(engine, role=Role.manager)
    made = await _seed_search(client, m)
    west = made["杭州西湖茶业"]["code"]
    bj, sh = "北京某某科技有限公司", "上海浦东物流集团"
    kinds = [
        (west, ["杭州西湖茶业"], made[bj]["code"], [bj]),
        ("13812345678", [bj], "02168881234", [sh]),
        ("北京", [bj], "上海", [sh]),
        ("某某科技", [bj], "浦东物流", [sh]),
        ("huawai technologies", ["Huawei Technologies"], "pudong logistcs", [sh]),
    ]
    for _ in range(2):  # the second round runs on the statements compiled in the first
        for q_one, want_one, q_two, want_two in kinds:
            assert (await _names(client, m, q=q_one))[:1] == want_one, q_one
            assert (await _names(client, m, q=q_two))[:1] == want_two, q_two
    # Relevance pages of one term, then of another: each cursor is the page's own.
    for name in ("苏州园林有限公司", "无锡太湖有限公司", "广州物流集团"):
        made[name] = await make_customer(client, m, name=name)
    for _ in range(2):
        for q in ("有限公司", "物流集团"):
            first = await client.get(
                "/api/v1/customers", params={"q": q, "limit": 1}, headers=m.headers
            )
            page = first.json()
            seen = [c["name"] for c in page["items"]]
            while page["next_cursor"]:
                page = (
                    await client.get(
                        "/api/v1/customers",
                        params={"q": q, "limit": 1, "cursor": page["next_cursor"]},
                        headers=m.headers,
                    )
                ).json()
                seen.extend(c["name"] for c in page["items"])
            assert sorted(seen) == sorted(n for n in made if q in n), q
