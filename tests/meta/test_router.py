"""Enums with Chinese labels, industries and admin-extensible source channels."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from tests.factories import make_customer, make_user


async def test_enums_have_chinese_labels(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    r = await client.get("/api/v1/meta/enums", headers=rep.headers)
    assert r.status_code == 200
    body = r.json()
    assert {"code": "potential", "label": "潜在客户"} in body["lifecycle"]
    assert {"code": "active", "label": "合作中"} in body["cooperation_status"]
    assert {"code": "dissatisfied", "label": "不满"} not in body["lifecycle"]
    industries = body["industry"]
    assert len([i for i in industries if len(i["code"]) == 1]) == 20
    assert len([i for i in industries if len(i["code"]) == 2]) == 97
    assert {"code": "exhibition", "label": "展会"} in body["source"]
    for values in body.values():
        for v in values:
            assert v["label"], v


async def test_admin_adds_source_channel(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    rep = await make_user(engine)
    r = await client.post(
        "/api/v1/meta/sources",
        json={"code": "douyin", "label": "抖音", "aliases": ["抖音直播"]},
        headers=admin.headers,
    )
    assert r.status_code == 201
    c = await make_customer(client, rep, source="抖音直播")
    assert c["source"] == "douyin"
    assert (
        await client.post(
            "/api/v1/meta/sources", json={"code": "x1", "label": "x"}, headers=rep.headers
        )
    ).status_code == 403
    off = await client.patch(
        "/api/v1/meta/sources/douyin", json={"active": False}, headers=admin.headers
    )
    assert off.json()["active"] is False
    rejected = await client.post(
        "/api/v1/customers", json={"name": "x", "source": "douyin"}, headers=rep.headers
    )
    assert rejected.status_code == 422
