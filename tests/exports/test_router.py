"""Exports: round trip through import, formula escaping, masking, visibility, audit."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import openpyxl
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from tests.factories import TestUser, make_customer, make_user
from tests.imports.helpers import run_import

URL = "/api/v1/exports/customers"
VOLATILE = {"code", "version", "created_at", "updated_at", "created_by", "updated_by"}


def _csv_rows(r: httpx.Response) -> list[list[str]]:
    assert r.status_code == 200, r.text
    return list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))


def _xlsx_rows(r: httpx.Response) -> list[list[Any]]:
    assert r.status_code == 200, r.text
    wb = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True)
    rows = [list(row) for row in wb.worksheets[0].iter_rows(values_only=True)]
    wb.close()
    return rows


async def _seed(client: httpx.AsyncClient, engine: AsyncEngine) -> tuple[TestUser, TestUser]:
    admin = await make_user(engine, role=Role.admin)
    rep = await make_user(engine, role=Role.sales)
    r = await client.post(
        "/api/v1/fields",
        json={"key": "level", "label": "客户等级", "type": "enum", "options": ["A", "B"]},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    await make_customer(
        client,
        admin,
        name="深圳市华南智能制造股份有限公司",
        contacts=[
            {"name": "张经理", "title": "采购总监", "phones": ["13812345678"], "email": "z@hn.cn"},
            {"name": "李工"},
        ],
        phone="+86 139 0000 1111",
        email="info@huanan.cn",
        industry="软件和信息技术服务业",
        region={"province": "广东省", "city": "深圳市"},
        address="南山区科技园",
        employee_band="100_299",
        source="展会",
        core_needs="产线数字化改造",
        need_tags=["MES", "数据看板"],
        budget="500000.00",
        lifecycle="老客户",
        cooperation_status="active",
        products=["MES 标准版"],
        contract_amount="120000.50",
        owner_id=rep.id,
        next_follow_up_at="2026-12-01T09:00:00+08:00",
        custom={"level": "A", "follow_up_summary": "已报价"},
    )
    await make_customer(
        client,
        admin,
        name="王女士",
        kind="individual",
        gender="female",
        age_band="25_34",
        phone="13700001234",
        price_sensitivity="high",
    )
    await make_customer(
        client, admin, name='=HYPERLINK("http://evil","点我")', core_needs="@SUM(1)"
    )
    return admin, rep


async def _all(client: httpx.AsyncClient, user: TestUser) -> dict[str, dict[str, Any]]:
    r = await client.get("/api/v1/customers", params={"limit": 200}, headers=user.headers)
    return {c["name"]: {k: v for k, v in c.items() if k not in VOLATILE} for c in r.json()["items"]}


@pytest.mark.parametrize(
    ("fmt", "headers"), [("csv", "en"), ("csv", "zh"), ("xlsx", "zh"), ("xlsx", "en")]
)
async def test_export_then_import_gives_the_same_customers(
    client: httpx.AsyncClient, engine: AsyncEngine, fmt: str, headers: str
):
    admin, _ = await _seed(client, engine)
    before = await _all(client, admin)
    r = await client.get(URL, params={"format": fmt, "headers": headers}, headers=admin.headers)
    assert r.status_code == 200 and r.headers["x-total-count"] == "3"
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE customers CASCADE"))
    job = await run_import(client, admin, r.content, f"export.{fmt}")
    assert job["status"] == "succeeded" and (job["imported"], job["failed"]) == (3, 0), job
    assert await _all(client, admin) == before
    # Exported codes name customers that no longer exist: reported, new codes given.
    items = (await client.get(job["errors_url"], headers=admin.headers)).json()["items"]
    assert {i["reason"] for i in items if i["row"]} <= {
        "a customer code that matches no customer; a new code was given"
    }


async def test_export_of_the_same_base_imports_as_nothing_new(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin, _ = await _seed(client, engine)
    r = await client.get(URL, headers=admin.headers)
    job = await run_import(client, admin, r.content, duplicate_policy="update")
    assert (job["imported"], job["updated"], job["skipped"]) == (0, 0, 3), job


async def test_formula_cells_are_escaped(client: httpx.AsyncClient, engine: AsyncEngine):
    admin, _ = await _seed(client, engine)
    rows = _csv_rows(await client.get(URL, params={"q": "HYPERLINK"}, headers=admin.headers))
    header, row = rows[0], rows[1]
    cells = dict(zip(header, row, strict=True))
    assert cells["name"] == '\'=HYPERLINK("http://evil","点我")'
    assert cells["core_needs"] == "'@SUM(1)"
    assert cells["phone"] == ""
    book = _xlsx_rows(
        await client.get(URL, params={"q": "HYPERLINK", "format": "xlsx"}, headers=admin.headers)
    )
    xcells = dict(zip(book[0], book[1], strict=True))
    assert xcells["name"] == '\'=HYPERLINK("http://evil","点我")'
    every = _csv_rows(await client.get(URL, headers=admin.headers))
    phone_col = every[0].index("phone")
    assert {r[phone_col] for r in every[1:]} == {"'+8613900001111", "'+8613700001234", ""}


async def test_marketing_exports_are_masked(client: httpx.AsyncClient, engine: AsyncEngine):
    await _seed(client, engine)
    marketing = await make_user(engine, role=Role.marketing)
    rows = _csv_rows(await client.get(URL, params={"headers": "zh"}, headers=marketing.headers))
    table = {r[1]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    hn = table["深圳市华南智能制造股份有限公司"]
    assert hn["联系方式"] == "139****1111" and hn["电子邮箱"] == "i***@huanan.cn"
    assert "13812345678" not in rows.__repr__() and "z@hn.cn" not in rows.__repr__()
    assert "138****5678" in hn["联系人"]
    assert hn["合同金额"] == "120000.50"  # marketing may see amounts, not PII
    assert hn["客户类型"] == "老客户" and hn["合作状态"] == "合作中"


async def test_a_rep_exports_only_what_they_see(client: httpx.AsyncClient, engine: AsyncEngine):
    _, rep = await _seed(client, engine)
    other = await make_user(engine, role=Role.sales)
    await make_customer(client, other, name="别人的客户有限公司")
    rows = _csv_rows(await client.get(URL, headers=rep.headers))
    names = {r[1] for r in rows[1:]}
    assert "别人的客户有限公司" not in names
    assert "深圳市华南智能制造股份有限公司" in names  # their own; the rest is the shared pool
    mine = _csv_rows(await client.get(URL, params={"owner": "me"}, headers=rep.headers))
    assert [r[1] for r in mine[1:]] == ["深圳市华南智能制造股份有限公司"]
    service = await make_user(engine, role=Role.service)
    assert (await client.get(URL, headers=service.headers)).status_code == 403


async def test_exports_are_audited_with_filter_and_count(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin, _ = await _seed(client, engine)
    r = await client.get(URL, params={"status": "active", "format": "xlsx"}, headers=admin.headers)
    assert len(_xlsx_rows(r)) == 2
    bad = await client.get(URL, params={"status": "nope"}, headers=admin.headers)
    assert bad.status_code == 422
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT actor, changes FROM audit_log WHERE action = 'customer.export'")
            )
        ).all()
    assert len(rows) == 1 and rows[0].actor == f"user:{admin.id}"
    after = rows[0].changes["export"]["after"]
    assert after == {
        "filter": {"status": ["active"]},
        "count": 1,
        "format": "xlsx",
        "headers": "en",
    }


async def test_export_a_saved_segment(client: httpx.AsyncClient, engine: AsyncEngine):
    from tests.factories import make_customer

    m = await make_user(engine, role=Role.manager)
    await make_customer(client, m, name="甲方", cooperation_status="active")
    await make_customer(client, m, name="乙方")
    seg = await client.post(
        "/api/v1/segments",
        json={"name": "合作中", "filter": {"status": ["active"]}, "shared": True},
        headers=m.headers,
    )
    assert seg.status_code == 201, seg.text
    r = await client.get(URL, params={"segment_id": seg.json()["id"]}, headers=m.headers)
    assert r.status_code == 200 and r.headers["x-total-count"] == "1"
    assert "甲方" in r.content.decode("utf-8-sig") and "乙方" not in r.content.decode("utf-8-sig")
    rep = await make_user(engine)
    hidden = await client.get(URL, params={"segment_id": 999999}, headers=rep.headers)
    assert hidden.status_code == 422 and hidden.json()["errors"][0]["field"] == "segment_id"
