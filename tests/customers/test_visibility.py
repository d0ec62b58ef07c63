"""Every customer route × every role, masking per role, the shared pool."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from tests.factories import TestUser, make_customer, make_user

CALLERS = ["admin", "manager", "owner", "other_rep", "service", "marketing", "data_admin"]

# route → caller → expected status for a customer owned by "owner" (another rep's is 404).
MATRIX: dict[str, dict[str, int]] = {
    "GET /customers/{code}": {
        "admin": 200,
        "manager": 200,
        "owner": 200,
        "other_rep": 404,
        "service": 200,
        "marketing": 200,
        "data_admin": 200,
    },
    "PATCH /customers/{code}": {
        "admin": 200,
        "manager": 200,
        "owner": 200,
        "other_rep": 404,
        "service": 403,
        "marketing": 403,
        "data_admin": 200,
    },
    "DELETE /customers/{code}": {
        "admin": 204,
        "manager": 204,
        "owner": 403,
        "other_rep": 403,
        "service": 403,
        "marketing": 403,
        "data_admin": 403,
    },
    "POST /customers/{code}/assign": {
        "admin": 200,
        "manager": 200,
        "owner": 403,
        "other_rep": 403,
        "service": 403,
        "marketing": 403,
        "data_admin": 403,
    },
    # Restoring needs a deleted customer; a live one is "no deleted customer" for the admin.
    "POST /customers/{code}/restore": {
        "admin": 404,
        "manager": 403,
        "owner": 403,
        "other_rep": 403,
        "service": 403,
        "marketing": 403,
        "data_admin": 403,
    },
    "GET /customers?q={code}": {
        "admin": 1,
        "manager": 1,
        "owner": 1,
        "other_rep": 0,
        "service": 1,
        "marketing": 1,
        "data_admin": 1,
    },
}
BODIES: dict[str, Any] = {
    "PATCH /customers/{code}": {"address": "新地址"},
}


async def _people(engine: AsyncEngine) -> dict[str, TestUser]:
    roles = {
        "admin": Role.admin,
        "manager": Role.manager,
        "owner": Role.sales,
        "other_rep": Role.sales,
        "service": Role.service,
        "marketing": Role.marketing,
        "data_admin": Role.data_admin,
    }
    return {name: await make_user(engine, role=role) for name, role in roles.items()}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", list(MATRIX))
async def test_customer_route_matrix(
    client: httpx.AsyncClient, engine: AsyncEngine, route: str, caller: str
):
    people = await _people(engine)
    customer = await make_customer(client, people["owner"], name="矩阵客户")
    method, path = route.split(" ", 1)
    url = "/api/v1" + path.format(code=customer["code"])
    body = BODIES.get(route)
    if route.endswith("/assign"):
        body = {"owner_id": people["owner"].id}
    r = await client.request(method, url, json=body, headers=people[caller].headers)
    expected = MATRIX[route][caller]
    if path.startswith("/customers?"):
        assert r.status_code == 200
        assert len(r.json()["items"]) == expected
    else:
        assert r.status_code == expected, r.text
        if expected >= 400:
            assert r.headers["content-type"] == "application/problem+json"


async def test_pool_customer_readable_not_writable_by_rep(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    manager = await make_user(engine, role=Role.manager)
    rep = await make_user(engine)
    pooled = await make_customer(client, manager, name="公海客户")
    assert pooled["owner_id"] is None
    url = f"/api/v1/customers/{pooled['code']}"
    assert (await client.get(url, headers=rep.headers)).status_code == 200
    names = [
        c["name"]
        for c in (await client.get("/api/v1/customers", headers=rep.headers)).json()["items"]
    ]
    assert names == ["公海客户"]
    r = await client.patch(url, json={"address": "x"}, headers=rep.headers)
    assert r.status_code == 403


CONTACT = {
    "name": "张经理",
    "phones": ["13812345678"],
    "email": "zhang@example.cn",
    "wechat_id": "zhangjl88",
}


async def test_marketing_sees_masked_pii(client: httpx.AsyncClient, engine: AsyncEngine):
    manager = await make_user(engine, role=Role.manager)
    marketing = await make_user(engine, role=Role.marketing)
    c = await make_customer(
        client,
        manager,
        phone="13812345678",
        email="boss@example.cn",
        contacts=[CONTACT],
        contract_amount="88000",
    )
    for r in (
        await client.get(f"/api/v1/customers/{c['code']}", headers=marketing.headers),
        await client.get("/api/v1/customers", headers=marketing.headers),
    ):
        body = r.json()
        record = body["items"][0] if "items" in body else body
        assert record["phone"] == "138****5678"
        assert record["email"] == "b***@example.cn"
        contact = record["contacts"][0]
        assert contact["phones"] == ["138****5678"]
        assert contact["email"] == "z***@example.cn"
        assert contact["wechat_id"] == "zh*****88"
        assert record["contract_amount"] == "88000.00"
        assert "13812345678" not in r.text


async def test_service_does_not_see_contract_amounts(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    manager = await make_user(engine, role=Role.manager)
    service = await make_user(engine, role=Role.service)
    c = await make_customer(client, manager, phone="13812345678", contract_amount="88000")
    r = await client.get(f"/api/v1/customers/{c['code']}", headers=service.headers)
    assert r.json()["contract_amount"] is None
    assert r.json()["phone"] == "+8613812345678"
    sort = await client.get(
        "/api/v1/customers", params={"sort": "-contract_amount"}, headers=service.headers
    )
    assert sort.status_code == 422


async def test_sales_sees_own_customer_unmasked(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    c = await make_customer(client, rep, phone="13812345678", contacts=[CONTACT])
    r = await client.get(f"/api/v1/customers/{c['code']}", headers=rep.headers)
    assert r.json()["phone"] == "+8613812345678"
    assert r.json()["contacts"][0]["wechat_id"] == "zhangjl88"


async def test_service_account_scopes_for_customers(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    manager = await make_user(engine, role=Role.manager)
    c = await make_customer(client, manager, phone="13812345678")

    async def token(scopes: list[str]) -> dict[str, str]:
        acct = (
            await client.post(
                "/api/v1/service-accounts",
                json={"name": "tool", "scopes": scopes},
                headers=admin.headers,
            )
        ).json()
        tok = await client.post(
            "/api/v1/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": acct["client_id"],
                "client_secret": acct["client_secret"],
            },
        )
        return {"Authorization": f"Bearer {tok.json()['access_token']}"}

    reader = await token(["customers:read"])
    got = await client.get(f"/api/v1/customers/{c['code']}", headers=reader)
    assert got.status_code == 200 and got.json()["phone"] == "138****5678"
    assert (
        await client.post("/api/v1/customers", json={"name": "x"}, headers=reader)
    ).status_code == 403
    writer = await token(["customers:read", "customers:write", "pii:read"])
    made = await client.post("/api/v1/customers", json={"name": "集成创建"}, headers=writer)
    assert made.status_code == 201 and made.json()["owner_id"] is None
    assert made.json()["created_by"].startswith("service:")
    assert (await client.get(f"/api/v1/customers/{c['code']}", headers=writer)).json()[
        "phone"
    ] == "+8613812345678"
