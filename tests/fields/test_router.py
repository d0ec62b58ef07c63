"""Custom fields: define, validate on every write, filter, change, retire."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from tests.factories import TestUser, make_customer, make_user


async def _define(client: httpx.AsyncClient, admin: TestUser, **spec: Any) -> httpx.Response:
    return await client.post("/api/v1/fields", json=spec, headers=admin.headers)


async def _setup(client: httpx.AsyncClient, engine: AsyncEngine) -> tuple[TestUser, TestUser]:
    admin = await make_user(engine, role=Role.admin)
    manager = await make_user(engine, role=Role.manager)
    for spec in (
        {"key": "level", "label": "客户等级", "type": "enum", "options": ["A", "B", "C"]},
        {"key": "seats", "label": "席位数", "type": "number"},
        {"key": "renewal", "label": "续约日期", "type": "date"},
        {"key": "vip", "label": "是否VIP", "type": "bool"},
        {"key": "note", "label": "备注", "type": "text"},
    ):
        assert (await _define(client, admin, **spec)).status_code == 201
    return admin, manager


async def test_values_validated_on_create_and_update(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    _, manager = await _setup(client, engine)
    good = await make_customer(
        client,
        manager,
        custom={"level": "A", "seats": "25", "renewal": "2027-03-01", "vip": True, "note": "重点"},
    )
    assert good["custom"] == {
        "level": "A",
        "seats": 25,
        "renewal": "2027-03-01",
        "vip": True,
        "note": "重点",
    }
    r = await client.post(
        "/api/v1/customers",
        json={
            "name": "x",
            "custom": {
                "level": "Z",
                "seats": "many",
                "renewal": "明天",
                "vip": "yes",
                "colour": "red",
            },
        },
        headers=manager.headers,
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {
        "custom.level",
        "custom.seats",
        "custom.renewal",
        "custom.vip",
        "custom.colour",
    }
    url = f"/api/v1/customers/{good['code']}"
    upd = await client.patch(
        url, json={"custom": {"seats": 30, "note": None}}, headers=manager.headers
    )
    assert upd.json()["custom"] == {"level": "A", "seats": 30, "renewal": "2027-03-01", "vip": True}
    bad = await client.patch(url, json={"custom": {"seats": True}}, headers=manager.headers)
    assert bad.status_code == 422


async def test_numbers_read_back_as_written(client: httpx.AsyncClient, engine: AsyncEngine):
    """Whole numbers within 64 bits stay exact through the JSONB round trip; larger ones and
    fractions come back as the floats they were stored as."""
    _, manager = await _setup(client, engine)
    for sent, expected in (
        (9_007_199_254_740_993, 9_007_199_254_740_993),  # past 2**53: still exact
        (-(2**63) + 1, -(2**63) + 1),
        ("123456789012345678901234567890", 1.2345678901234568e29),
        ("0.1", 0.1),
    ):
        made = await make_customer(client, manager, custom={"seats": sent})
        got = await client.get(f"/api/v1/customers/{made['code']}", headers=manager.headers)
        assert made["custom"]["seats"] == expected
        assert got.json()["custom"]["seats"] == expected


async def test_required_field(client: httpx.AsyncClient, engine: AsyncEngine):
    admin, manager = await _setup(client, engine)
    old = await make_customer(client, manager, name="早于必填字段")
    await _define(client, admin, key="contract_no", label="合同号", type="text", required=True)
    missing = await client.post("/api/v1/customers", json={"name": "x"}, headers=manager.headers)
    assert missing.status_code == 422
    assert missing.json()["errors"][0] == {
        "field": "custom.contract_no",
        "message": "required",
        "code": "missing",
    }
    # Existing records stay editable without the new field until it is touched.
    ok = await client.patch(
        f"/api/v1/customers/{old['code']}", json={"address": "x"}, headers=manager.headers
    )
    assert ok.status_code == 200
    cleared = await client.patch(
        f"/api/v1/customers/{old['code']}",
        json={"custom": {"contract_no": None}},
        headers=manager.headers,
    )
    assert cleared.status_code == 422


async def test_filter_by_custom_fields(client: httpx.AsyncClient, engine: AsyncEngine):
    _, manager = await _setup(client, engine)
    await make_customer(
        client,
        manager,
        name="甲",
        custom={"level": "A", "seats": 5, "vip": True, "renewal": "2027-01-01"},
    )
    await make_customer(client, manager, name="乙", custom={"level": "B", "seats": 50})
    await make_customer(client, manager, name="丙")

    async def names(**params: Any) -> list[str]:
        r = await client.get("/api/v1/customers", params=params, headers=manager.headers)
        assert r.status_code == 200, r.text
        return sorted(c["name"] for c in r.json()["items"])

    assert await names(**{"custom.level": "A"}) == ["甲"]
    assert await names(**{"custom.vip": "true"}) == ["甲"]
    assert await names(**{"custom.seats.gte": "10"}) == ["乙"]
    assert await names(**{"custom.seats.lte": "50"}) == ["乙", "甲"]
    assert await names(**{"custom.renewal.gte": "2026-12-31"}) == ["甲"]
    unknown = await client.get(
        "/api/v1/customers", params={"custom.colour": "red"}, headers=manager.headers
    )
    assert unknown.status_code == 422
    bad_op = await client.get(
        "/api/v1/customers", params={"custom.level.gte": "A"}, headers=manager.headers
    )
    assert bad_op.status_code == 422


async def test_definitions_change_and_retire(client: httpx.AsyncClient, engine: AsyncEngine):
    admin, manager = await _setup(client, engine)
    c = await make_customer(client, manager, custom={"level": "A"})
    dup = await _define(client, admin, key="level", label="x", type="text")
    assert dup.status_code == 409
    bad = await _define(client, admin, key="Bad Key", label="x", type="enum")
    assert bad.status_code == 422
    add = await client.patch(
        "/api/v1/fields/level", json={"options": ["A", "B", "C", "D"]}, headers=admin.headers
    )
    assert add.json()["options"] == ["A", "B", "C", "D"]
    remove = await client.patch(
        "/api/v1/fields/level", json={"options": ["A"]}, headers=admin.headers
    )
    assert remove.status_code == 422
    assert (await client.delete("/api/v1/fields/level", headers=admin.headers)).status_code == 204
    listed = await client.get("/api/v1/fields", headers=manager.headers)
    assert "level" not in [f["key"] for f in listed.json()]
    rejected = await client.patch(
        f"/api/v1/customers/{c['code']}", json={"custom": {"level": "B"}}, headers=manager.headers
    )
    assert rejected.status_code == 422
    # Stored values of a retired field remain readable and filterable.
    still = await client.get(
        "/api/v1/customers", params={"custom.level": "A"}, headers=manager.headers
    )
    assert [x["code"] for x in still.json()["items"]] == [c["code"]]
    denied = await _define(client, manager, key="x", label="x", type="text")
    assert denied.status_code == 403
    async with engine.connect() as conn:
        actions = {r[0] for r in await conn.execute(text("SELECT action FROM audit_log"))}
    assert {"field.create", "field.update", "field.retire"} <= actions
