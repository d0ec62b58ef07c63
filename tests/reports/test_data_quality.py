"""The data-quality report: completeness per key field and overall, flags, visibility."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from tests.factories import make_customer, make_user
from tests.imports.helpers import csv_bytes, run_import

URL = "/api/v1/reports/data-quality"


async def test_completeness_and_flags(client: httpx.AsyncClient, engine: AsyncEngine):
    manager = await make_user(engine, role=Role.manager)
    rep = await make_user(engine, role=Role.sales)
    empty = (await client.get(URL, headers=manager.headers)).json()
    assert empty["customers"] == 0 and empty["completeness"] == 1.0
    await make_customer(
        client,
        manager,
        name="完整客户有限公司",
        phone="13800000001",
        industry="软件",
        source="展会",
        region={"province": "广东省"},
        contacts=[{"name": "张经理"}],
        core_needs="CRM",
        owner_id=rep.id,
    )
    await make_customer(client, manager, name="缺很多有限公司")
    await make_customer(client, manager, name="李先生", kind="individual", email="li@x.cn")
    importer = await make_user(engine, role=Role.data_admin)
    await run_import(client, importer, csv_bytes([["客户名称", "联系方式"], ["甲", "138****0000"]]))

    report = (await client.get(URL, headers=manager.headers)).json()
    assert report["customers"] == 4
    fields = {f["field"]: f for f in report["fields"]}
    assert fields["contact"] == {
        "field": "contact",
        "label": "联系方式（电话或邮箱）",
        "filled": 2,
        "applicable": 4,
        "completeness": 0.5,
    }
    assert (fields["industry"]["filled"], fields["industry"]["applicable"]) == (1, 3)
    assert fields["owner"]["filled"] == 1 and fields["contact_person"]["filled"] == 1
    filled = sum(f["filled"] for f in report["fields"])
    applicable = sum(f["applicable"] for f in report["fields"])
    assert report["completeness"] == round(filled / applicable, 4)
    assert report["target"] == 0.9 and report["meets_target"] is False
    assert report["complete_customers"] == 1
    assert report["to_verify"] == 1 and report["to_complete"] == 3
    assert report["duplicates_pending"] == 0

    assert (await client.get(URL, headers=rep.headers)).status_code == 403  # no reports:read
    marketing = await make_user(engine, role=Role.marketing)
    assert (await client.get(URL, headers=marketing.headers)).json()["customers"] == 4
    assert (await client.get(URL, headers=importer.headers)).status_code == 403
