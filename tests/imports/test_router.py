"""Imports: the template sheet, encodings, XLSX, dry run, re-import, duplicate policies, errors."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import httpx
import openpyxl
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.auth.permissions import Role
from app.imports import repository as imports_repo
from app.segments import repository as segments_repo
from tests.factories import make_customer, make_user
from tests.imports.helpers import TEMPLATE, csv_bytes, run_import, upload

MESSY: list[list[Any]] = [
    TEMPLATE,
    [
        "",
        "深圳市华南智能制造股份有限公司",
        "张经理",
        "138-1234-5678",
        "Zhang@HuaNan.cn",
        "制造业",
        "展会",
        "产线数字化改造",
        "100-299人",
        "2026年11月22日",
        "rep@example.com",
        "初次拜访，介绍了 MES",
        "下周二报价",
        "老客户",
        "合作中",
        "MES 标准版、数据看板",
        "120,000.50",
        "MES、数据看板，智能制造",
    ],
    [
        "",
        "北京某某科技有限公司",
        "李工",
        "138****5678",
        "",
        "软件",
        "官网",
        "CRM 替换",
        "50人",
        "2026/11/20",
        "王小明",
        "",
        "",
        "",
        "潜在客户",  # a lifecycle value in the 合作状态 column
        "",
        "12万",
        "SaaS;CRM,华北",
    ],
    [
        "",
        "杭州西湖茶业有限公司",
        "陈总",
        "0571 8888 6666",
        "not-an-email@",
        "种茶和卖茶",  # no GB/T 4754 mapping
        "朋友圈",  # no such source
        "",
        "",
        "11/22/2026",
        "nobody@example.com",
        "",
        "",
        "合作中",  # a cooperation status in the 客户类型 column
        "",
        "",
        "-5",
        "",
    ],
    ["", "", "赵六", "13900001111", "", "", "", "", "", "", "", "", "", "", "", "", "", ""],
    ["", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", ""],  # blank: ignored
]


async def _setup(engine: AsyncEngine) -> tuple[Any, Any]:
    importer = await make_user(engine, role=Role.data_admin)
    rep = await make_user(engine, role=Role.sales, email="rep@example.com")
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET display_name = '王小明' WHERE id = :id"), {"id": rep.id}
        )
    return importer, rep


async def _customers(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM customers ORDER BY id"))).mappings().all()
    return {r["name"]: dict(r) for r in rows}


async def _count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


async def test_messy_template_sheet(client: httpx.AsyncClient, engine: AsyncEngine):
    importer, rep = await _setup(engine)
    job = await run_import(client, importer, csv_bytes(MESSY))
    assert job["status"] == "succeeded", job
    assert job["rows_read"] == 4 and job["percent"] == 100
    assert (job["imported"], job["updated"], job["skipped"], job["failed"]) == (3, 0, 0, 1)
    assert job["encoding"] == "utf-8" and job["file_format"] == "csv"

    by_name = await _customers(engine)
    hn = by_name["深圳市华南智能制造股份有限公司"]
    assert hn["code"].startswith("C") and len(hn["code"]) == 12
    assert hn["phone"] == "+8613812345678" and hn["email"] == "zhang@huanan.cn"
    assert hn["industry"] == "C" and hn["source"] == "exhibition"
    assert hn["employee_band"] == "100_299"
    assert hn["lifecycle"] == "existing" and hn["lifecycle_baseline"] == "existing"
    assert hn["cooperation_status"] == "active" and hn["first_cooperation_date"] is not None
    assert hn["products"] == ["MES 标准版", "数据看板"]
    assert str(hn["contract_amount"]) == "120000.50"
    assert hn["need_tags"] == ["MES", "数据看板", "智能制造"]
    assert hn["owner_id"] == rep.id
    assert hn["last_follow_up_at"].isoformat().startswith("2026-11-21T16:00:00")  # 00:00 +08
    assert hn["contacts"] == [{"name": "张经理"}]
    assert hn["custom"] == {"follow_up_summary": "初次拜访，介绍了 MES", "next_step": "下周二报价"}
    assert hn["flags"] == [] and hn["created_by"] == f"user:{importer.id}"

    bj = by_name["北京某某科技有限公司"]
    assert bj["phone"] is None and bj["raw_phone"] == "138****5678"
    assert "to_verify" in bj["flags"]
    assert bj["lifecycle"] == "potential" and bj["cooperation_status"] == "not_started"
    assert bj["employee_band"] == "20_99" and bj["industry"] == "65"
    assert bj["owner_id"] == rep.id  # by display name
    assert str(bj["contract_amount"]) == "120000.00"
    assert bj["need_tags"] == ["SaaS", "CRM", "华北"]

    hz = by_name["杭州西湖茶业有限公司"]
    assert hz["phone"] == "+8657188886666" and hz["email"] is None
    assert hz["cooperation_status"] == "active"  # moved over from 客户类型
    assert hz["industry"] is None and hz["source"] is None and hz["owner_id"] is None
    assert set(hz["flags"]) == {"to_verify", "to_complete"}
    assert hz["contract_amount"] is None
    assert hz["last_follow_up_at"].date().isoformat() == "2026-11-21"

    # The record shows the raw phone; search finds imported rows (pinyin included).
    r = await client.get("/api/v1/customers", params={"q": "huanan"}, headers=importer.headers)
    assert [c["name"] for c in r.json()["items"]] == ["深圳市华南智能制造股份有限公司"]
    r = await client.get(f"/api/v1/customers/{bj['code']}", headers=importer.headers)
    assert r.json()["raw_phone"] == "138****5678" and "to_verify" in r.json()["flags"]
    r = await client.get("/api/v1/customers", params={"q": hz["code"]}, headers=importer.headers)
    assert r.json()["items"][0]["code"] == hz["code"]

    errors = await client.get(job["errors_url"], headers=importer.headers)
    assert errors.status_code == 200
    items = errors.json()["items"]
    by = {(i["row"], i["column"]): i for i in items}
    assert by[(3, "联系方式")]["value"] == "138****5678"
    assert "raw_phone" in by[(3, "联系方式")]["reason"]
    assert "lifecycle" in by[(3, "合作状态")]["reason"]
    assert "cooperation_status" in by[(4, "客户类型")]["reason"]
    assert by[(4, "电子邮箱")]["level"] == "warning"
    assert by[(4, "所属行业")]["value"] == "种茶和卖茶"
    assert by[(4, "客户来源")]["value"] == "朋友圈"
    assert by[(4, "跟进人")]["value"] == "nobody@example.com"
    assert by[(4, "合同金额")]["value"] == "-5"
    assert by[(5, "客户名称")]["level"] == "error"
    assert job["warnings"] == sum(1 for i in items if i["level"] == "warning")

    as_csv = await client.get(job["errors_url"], params={"format": "csv"}, headers=importer.headers)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    lines = as_csv.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "row,column,value,reason,level"
    assert len(lines) == len(items) + 1

    async with engine.connect() as conn:
        audit = (
            await conn.execute(
                text("SELECT actor, changes FROM audit_log WHERE action = 'customer.import'")
            )
        ).all()
    assert len(audit) == 1 and audit[0].actor == f"user:{importer.id}"
    assert audit[0].changes["import"]["after"]["imported"] == 3


async def test_unknown_columns_and_custom_fields(client: httpx.AsyncClient, engine: AsyncEngine):
    importer, _ = await _setup(engine)
    admin = await make_user(engine, role=Role.admin)
    r = await client.post(
        "/api/v1/fields",
        json={"key": "vip", "label": "是否VIP", "type": "bool"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    rows = [
        ["name", "phone", "是否VIP", "备注二", "custom.next_step"],
        ["甲公司", "13800000001", "是", "x", "回访"],
        ["乙公司", "13800000002", "也许", "y", ""],
    ]
    job = await run_import(client, importer, csv_bytes(rows))
    assert (job["imported"], job["failed"]) == (2, 0)
    by_name = await _customers(engine)
    assert by_name["甲公司"]["custom"] == {"vip": True, "next_step": "回访"}
    assert by_name["乙公司"]["custom"] == {}
    items = (await client.get(job["errors_url"], headers=importer.headers)).json()["items"]
    unknown = [i for i in items if i["row"] is None]
    assert unknown == [
        {
            "row": None,
            "column": "备注二",
            "value": None,
            "reason": "unknown column; ignored",
            "level": "warning",
        }
    ]
    assert any(i["row"] == 3 and i["column"] == "是否VIP" for i in items)


async def test_gbk_and_bom_files(client: httpx.AsyncClient, engine: AsyncEngine):
    importer, _ = await _setup(engine)
    rows = [TEMPLATE[:6], ["", "广州白云电器有限公司", "黄工", "020-8888 6666", "", "电气机械"]]
    gbk = await run_import(client, importer, csv_bytes(rows, "gbk"))
    assert gbk["status"] == "succeeded" and gbk["encoding"] == "gb18030"
    assert gbk["imported"] == 1
    bom = await run_import(client, importer, csv_bytes(rows, "utf-8-sig"))
    assert bom["encoding"] == "utf-8-sig"
    assert (bom["imported"], bom["skipped"]) == (0, 1)  # the same customer: nothing new
    customers = await _customers(engine)
    assert list(customers) == ["广州白云电器有限公司"]
    assert customers["广州白云电器有限公司"]["industry"] == "38"
    assert customers["广州白云电器有限公司"]["contacts"] == [{"name": "黄工"}]


async def test_xlsx_upload(client: httpx.AsyncClient, engine: AsyncEngine):
    importer, _ = await _setup(engine)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["客户名称", "联系方式", "最近跟进日期", "合同金额", "客户类型", "客户标签"])
    ws.append(
        ["成都天府软件有限公司", 13812345678, datetime(2026, 11, 22, 9, 30), 5000, "新客户", "A、B"]
    )
    ws.append(["'=cmd|' /C calc'!A0", "", "2026-11-01", "", "", ""])
    buffer = io.BytesIO()
    wb.save(buffer)
    job = await run_import(client, importer, buffer.getvalue(), "客户.xlsx")
    assert job["status"] == "succeeded" and job["file_format"] == "xlsx", job
    assert job["imported"] == 2
    customers = await _customers(engine)
    cd = customers["成都天府软件有限公司"]
    assert cd["phone"] == "+8613812345678"
    assert cd["last_follow_up_at"].isoformat().startswith("2026-11-22T01:30:00")
    assert str(cd["contract_amount"]) == "5000.00" and cd["lifecycle"] == "new"
    assert cd["need_tags"] == ["A", "B"]
    assert "=cmd|' /C calc'!A0" in customers  # the export's escape is undone on import


async def test_dry_run_writes_nothing(client: httpx.AsyncClient, engine: AsyncEngine):
    importer, _ = await _setup(engine)
    job = await run_import(client, importer, csv_bytes(MESSY), dry_run=True)
    assert job["status"] == "succeeded" and job["dry_run"] is True
    assert (job["imported"], job["failed"]) == (3, 1)
    assert await _count(engine, "customers") == 0
    assert await _count(engine, "customer_code_counters") == 0
    async with engine.connect() as conn:
        actions = [r[0] for r in await conn.execute(text("SELECT action FROM audit_log"))]
    assert "customer.import" not in actions
    # The report is there all the same.
    items = (await client.get(job["errors_url"], headers=importer.headers)).json()["items"]
    assert any(i["level"] == "error" for i in items)


async def test_reimport_creates_nothing(client: httpx.AsyncClient, engine: AsyncEngine):
    importer, _ = await _setup(engine)
    first = await run_import(client, importer, csv_bytes(MESSY))
    before = await _customers(engine)
    again = await run_import(client, importer, csv_bytes(MESSY))
    assert (again["imported"], again["skipped"], again["failed"]) == (0, 3, 1)
    unchanged = await run_import(client, importer, csv_bytes(MESSY), duplicate_policy="update")
    assert (unchanged["imported"], unchanged["updated"], unchanged["skipped"]) == (0, 0, 3)
    after = await _customers(engine)
    assert after == before and first["imported"] == 3


async def test_duplicate_policies(client: httpx.AsyncClient, engine: AsyncEngine):
    importer, _ = await _setup(engine)
    existing = await make_customer(
        client, importer, name="苏州园林设计有限公司", phone="13811112222", core_needs="旧需求"
    )
    header = ["客户编号", "客户名称", "联系方式", "电子邮箱", "核心需求", "客户标签"]
    by_code = [header, [existing["code"], "苏州园林设计有限公司", "", "a@yl.cn", "新需求", "园林"]]
    merged = await run_import(client, importer, csv_bytes(by_code), duplicate_policy="merge")
    assert (merged["imported"], merged["updated"]) == (0, 1)
    row = (await _customers(engine))["苏州园林设计有限公司"]
    assert row["email"] == "a@yl.cn" and row["core_needs"] == "旧需求"  # filled, not overwritten
    assert row["need_tags"] == ["园林"] and row["version"] == 2

    by_phone = [header, ["", "苏州园林设计有限公司", "138 1111 2222", "", "新需求", "设计"]]
    updated = await run_import(client, importer, csv_bytes(by_phone), duplicate_policy="update")
    assert (updated["imported"], updated["updated"]) == (0, 1)
    row = (await _customers(engine))["苏州园林设计有限公司"]
    assert row["core_needs"] == "新需求" and row["need_tags"] == ["园林", "设计"]
    r = await client.get(f"/api/v1/customers/{existing['code']}", headers=importer.headers)
    assert r.json()["version"] == 3 and r.json()["email"] == "a@yl.cn"

    # Two rows of one file for the same new customer: one customer, the second folded in.
    twice = [
        ["客户名称", "联系方式", "核心需求"],
        ["无锡新材料有限公司", "13900002222", ""],
        ["无锡新材料有限公司", "13900002222", "降本"],
    ]
    folded = await run_import(client, importer, csv_bytes(twice), duplicate_policy="merge")
    assert (folded["imported"], folded["skipped"]) == (1, 1)
    assert (await _customers(engine))["无锡新材料有限公司"]["core_needs"] == "降本"


async def test_same_name_with_another_phone_is_another_customer(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    importer, _ = await _setup(engine)
    await make_customer(client, importer, name="张伟", kind="individual", phone="13800001111")
    rows = [["客户名称", "联系方式", "客户类别"], ["张伟", "13800002222", "个人客户"]]
    job = await run_import(client, importer, csv_bytes(rows))
    assert job["imported"] == 1
    assert await _count(engine, "customers") == 2


async def test_job_visibility(client: httpx.AsyncClient, engine: AsyncEngine):
    importer, _ = await _setup(engine)
    other = await make_user(engine, role=Role.data_admin)
    admin = await make_user(engine, role=Role.admin)
    job = await run_import(client, importer, csv_bytes(MESSY[:2]))
    url = f"/api/v1/imports/{job['id']}"
    assert (await client.get(url, headers=other.headers)).status_code == 404
    assert (await client.get(url + "/errors", headers=other.headers)).status_code == 404
    assert (await client.get(url, headers=admin.headers)).status_code == 200
    listed = await client.get("/api/v1/imports", headers=importer.headers)
    assert [j["id"] for j in listed.json()["items"]] == [job["id"]]
    assert (await client.get("/api/v1/imports", headers=other.headers)).json()["items"] == []
    rep = await make_user(engine, role=Role.sales)
    assert (await upload(client, rep, csv_bytes(MESSY))).status_code == 403


@pytest.mark.parametrize("path", ["staged", "classified after insert"])
async def test_imported_customers_carry_their_classes(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, path: str
):
    # The fallback, should the segmentation's statement change shape: slower, same classes.
    if path != "staged":
        monkeypatch.setattr(imports_repo, "NEW_CUSTOMERS_SQL", None)
    importer, _ = await _setup(engine)
    rows = [
        ["客户名称", "联系方式", "核心需求", "最近跟进日期", "客户类型"],
        ["甲需求有限公司", "13800000011", "产线改造", "", ""],  # an open need: potential
        ["乙沉默有限公司", "13800000012", "", "2020-01-01", ""],  # quiet for years: churn risk
        ["丙老客户有限公司", "13800000013", "", "", "老客户"],  # given as existing
    ]
    job = await run_import(client, importer, csv_bytes(rows))
    assert job["imported"] == 3
    by_name = await _customers(engine)
    need, quiet, old = (by_name[r[0]] for r in rows[1:])
    assert (need["value_tier"], need["lifecycle"], need["activity"]) == (
        "potential",
        "potential",
        "active",
    )
    assert (quiet["value_tier"], quiet["activity"]) == ("churn_risk", "lost")
    assert (old["lifecycle"], old["lifecycle_baseline"]) == ("existing", "existing")
    # Exactly the segmentation's classes: reclassifying the base changes none of them.
    async with AsyncSession(engine) as session, session.begin():
        swept = await segments_repo.classify_all(session, cause="sweep", tz="Asia/Shanghai")
    assert swept["customers_changed"] == 0
    if path == "staged":
        # A new customer's first classes are not changes (it had no class before).
        assert await _count(engine, "tier_changes") == 0


async def test_updated_customers_are_reclassified(client: httpx.AsyncClient, engine: AsyncEngine):
    importer, _ = await _setup(engine)
    existing = await make_customer(client, importer, name="丁贸易有限公司", phone="13800000021")
    assert existing["value_tier"] == "normal"
    rows = [["客户名称", "联系方式", "核心需求"], ["丁贸易有限公司", "13800000021", "渠道拓展"]]
    job = await run_import(client, importer, csv_bytes(rows), duplicate_policy="update")
    assert (job["imported"], job["updated"]) == (0, 1)
    row = (await _customers(engine))["丁贸易有限公司"]
    assert row["value_tier"] == "potential"
    async with engine.connect() as conn:
        changes = (
            await conn.execute(
                text(
                    "SELECT dimension, old_class, new_class, cause FROM tier_changes "
                    "WHERE customer_id = :id"
                ),
                {"id": row["id"]},
            )
        ).all()
    assert [tuple(c) for c in changes] == [("value_tier", "normal", "potential", "import")]
