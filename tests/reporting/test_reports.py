"""Reports against figures computed by hand on a small fixed data set (ISO week 2025-W10,
Monday 3 to Sunday 9 March 2025, and March 2025, Asia/Shanghai), visibility per role, CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import tokens
from app.auth.permissions import Role
from app.core.config import get_settings
from tests.factories import TestUser, make_user

SH = ZoneInfo("Asia/Shanghai")
BASE = "/api/v1/reports"


def at(local: str) -> datetime:
    """A Shanghai wall-clock time."""
    return datetime.fromisoformat(local).replace(tzinfo=SH)


@dataclass
class World:
    manager: TestUser
    marketing: TestUser
    admin: TestUser
    sales: TestUser
    s1: TestUser
    s2: TestUser
    ids: dict[str, int]


async def _customer(conn: Any, code: str, **values: Any) -> int:
    values = {"code": code, "name": f"客户{code}", **values}
    names = ", ".join(values)
    params = ", ".join(f":{k}" for k in values)
    customer_id = await conn.scalar(
        text(f"INSERT INTO customers ({names}) VALUES ({params}) RETURNING id"), values
    )
    return int(customer_id)


async def _interaction(
    conn: Any,
    customer_id: int,
    occurred_at: datetime,
    *,
    direction: str = "inbound",
    channel: str = "phone",
    kind: str = "inquiry",
    summary: str | None = None,
    amount: str | None = None,
) -> None:
    await conn.execute(
        text(
            "INSERT INTO interactions (customer_id, occurred_at, channel, kind, direction, "
            "summary, amount, resolved) VALUES (:c, :at, :ch, :k, :d, :s, "
            "CAST(:amount AS numeric), :resolved)"
        ),
        {
            "c": customer_id,
            "at": occurred_at,
            "ch": channel,
            "k": kind,
            "d": direction,
            "s": summary,
            "amount": amount,
            "resolved": False if kind == "complaint" else None,
        },
    )


async def _task(
    conn: Any,
    customer_id: int,
    assignee: int,
    due: datetime,
    status: str = "open",
    completed: datetime | None = None,
) -> None:
    await conn.execute(
        text(
            "INSERT INTO tasks (customer_id, title, assignee_id, due_at, status, completed_at) "
            "VALUES (:c, '回访', :a, :due, :status, :done)"
        ),
        {"c": customer_id, "a": assignee, "due": due, "status": status, "done": completed},
    )


async def _change(
    conn: Any, customer_id: int, when: datetime, old: str, new: str, dimension: str = "value_tier"
) -> None:
    await conn.execute(
        text(
            "INSERT INTO tier_changes (customer_id, changed_at, dimension, old_class, new_class, "
            "reason, cause) VALUES (:c, :at, :dim, :old, :new, 'test', 'sweep')"
        ),
        {"c": customer_id, "at": when, "dim": dimension, "old": old, "new": new},
    )


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    manager = await make_user(engine, role=Role.manager)
    marketing = await make_user(engine, role=Role.marketing)
    admin = await make_user(engine, role=Role.admin)
    sales = await make_user(engine, role=Role.sales)
    s1 = await make_user(engine, role=Role.sales, email="s1@example.com")
    s2 = await make_user(engine, role=Role.sales, email="s2@example.com")
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET display_name = :n WHERE id = :id"), {"n": "王销售", "id": s1.id}
        )
        c = {
            "c1": await _customer(
                conn,
                "C1",
                source="exhibition",
                created_at=at("2025-03-03 10:00"),
                owner_id=s1.id,
                value_tier="high_value",
                lifecycle="existing",
                cooperation_status="active",
                industry="65",
                province="北京",
                phone="+8613800000001",
            ),
            "c2": await _customer(
                conn,
                "C2",
                source="exhibition",
                created_at=at("2025-03-05 09:00"),
                owner_id=s1.id,
                value_tier="high_value",
                lifecycle="potential",
                industry="I",
                province="上海",
                email="c2@example.com",
            ),
            # Sunday 23:30 in Shanghai: inside the week there, and in UTC too.
            "c3": await _customer(
                conn,
                "C3",
                source="referral",
                created_at=at("2025-03-09 23:30"),
                owner_id=s2.id,
                value_tier="normal",
                lifecycle="new",
                cooperation_status="active",
                city="深圳",
            ),
            # Monday 00:30 in Shanghai (the next week), still Sunday in UTC.
            "c4": await _customer(
                conn,
                "C4",
                source="website_form",
                created_at=at("2025-03-10 00:30"),
                value_tier="churn_risk",
                lifecycle="churned",
                cooperation_status="paused",
            ),
            "c5": await _customer(
                conn,
                "C5",
                created_at=at("2025-02-20 10:00"),
                owner_id=s2.id,
                value_tier="churn_risk",
                lifecycle="existing",
                cooperation_status="active",
                industry="01",
                province="北京",
                phone="+8613800000005",
                last_follow_up_at=at("2025-02-25 10:00"),
            ),
            # Created in the week, but first contacted long before: not a new customer.
            "c6": await _customer(
                conn,
                "C6",
                source="referral",
                created_at=at("2025-03-04 11:00"),
                first_contact_at=at("2024-12-01 10:00"),
                owner_id=s1.id,
                value_tier="potential",
                email="c6@example.com",
            ),
            # Withdrew marketing consent: marketing does not see it, nor count it.
            "c7": await _customer(
                conn,
                "C7",
                source="exhibition",
                created_at=at("2025-03-06 15:00"),
                owner_id=s2.id,
                value_tier="normal",
                flags=["no_marketing"],
            ),
            "c8": await _customer(
                conn,
                "C8",
                source="exhibition",
                created_at=at("2025-03-04 09:00"),
                owner_id=s1.id,
                deleted_at=at("2025-03-05 09:00"),
            ),
        }
        # Inbound interactions of the week and their answers.
        await _interaction(conn, c["c1"], at("2025-03-02 10:00"))  # the week before
        await _interaction(conn, c["c1"], at("2025-03-04 10:00"))
        await _interaction(conn, c["c1"], at("2025-03-04 15:00"), direction="outbound")
        await _interaction(conn, c["c2"], at("2025-03-05 09:00"), channel="wechat")
        await _interaction(conn, c["c2"], at("2025-03-07 10:00"), direction="outbound")
        await _interaction(conn, c["c3"], at("2025-03-08 20:00"))
        await _interaction(conn, c["c1"], at("2025-03-09 23:00"), channel="email")
        await _interaction(conn, c["c1"], at("2025-03-10 08:00"), direction="outbound")
        await _interaction(conn, c["c7"], at("2025-03-06 11:00"))
        await _interaction(conn, c["c8"], at("2025-03-05 08:00"))  # deleted customer
        # Deals in March (outbound, after the week).
        for key, when, amount in (
            ("c1", "2025-03-12 10:00", "15000.00"),
            ("c1", "2025-03-20 10:00", "5000.00"),
            ("c3", "2025-03-25 10:00", "1000.00"),
            ("c5", "2025-03-18 10:00", "800.00"),
            ("c7", "2025-03-15 10:00", "2000.00"),
            ("c1", "2025-04-02 10:00", "9999.00"),  # April
        ):
            await _interaction(
                conn, c[key], at(when), direction="outbound", kind="purchase", amount=amount
            )
        # Complaints and feedback in March.
        for key, when, kind, summary in (
            ("c1", "2025-03-11 10:00", "complaint", "产品质量太差，发货速度太慢"),
            ("c2", "2025-03-12 10:00", "complaint", "发货速度慢，产品质量不稳定"),
            ("c3", "2025-03-13 10:00", "complaint", "售后服务态度差，产品质量一般"),
            ("c1", "2025-03-14 10:00", "complaint", "发货速度又慢了"),
            ("c7", "2025-03-15 11:00", "complaint", "价格太贵"),
            ("c1", "2025-03-16 10:00", "feedback", "安装服务很专业"),
            ("c2", "2025-03-17 10:00", "feedback", "安装服务满意"),
            ("c2", "2025-04-01 10:00", "complaint", "发货太慢"),  # April
        ):
            await _interaction(
                conn, c[key], at(when), direction="inbound", kind=kind, summary=summary
            )
        # Tasks due in the week (and one the week after).
        await _task(conn, c["c1"], s1.id, at("2025-03-04 18:00"), "done", at("2025-03-04 17:00"))
        await _task(conn, c["c2"], s1.id, at("2025-03-05 18:00"), "done", at("2025-03-06 10:00"))
        await _task(conn, c["c3"], s2.id, at("2025-03-07 12:00"))
        await _task(conn, c["c1"], s2.id, at("2025-03-08 12:00"), "cancelled")
        await _task(conn, c["c7"], s2.id, at("2025-03-06 12:00"), "done", at("2025-03-06 09:00"))
        await _task(conn, c["c5"], s1.id, at("2025-03-12 12:00"))
        # Value tier changes (c1's in February), and one lifecycle change.
        await _change(conn, c["c1"], at("2025-02-15 10:00"), "high_value", "churn_risk")
        await _change(conn, c["c1"], at("2025-02-20 10:00"), "churn_risk", "high_value")
        await _change(conn, c["c2"], at("2025-03-05 09:05"), "normal", "potential")
        await _change(conn, c["c7"], at("2025-03-08 12:00"), "potential", "normal")
        await _change(conn, c["c6"], at("2025-03-15 10:00"), "normal", "potential")
        await _change(conn, c["c2"], at("2025-03-20 10:00"), "potential", "high_value")
        await _change(conn, c["c5"], at("2025-03-25 10:00"), "high_value", "churn_risk")
        await _change(conn, c["c3"], at("2025-03-09 23:40"), "potential", "new", "lifecycle")
        # Acquisition costs for March.
        for channel, amount in (("exhibition", 10000), ("referral", 2000), ("wechat", 500)):
            await conn.execute(
                text(
                    "INSERT INTO channel_costs (channel, month, amount) "
                    "VALUES (:ch, DATE '2025-03-01', :a)"
                ),
                {"ch": channel, "a": amount},
            )
    return World(manager, marketing, admin, sales, s1, s2, c)


def _by_key(rows: list[dict[str, Any]], *fields: str) -> dict[Any, Any]:
    return {
        r["key"]: tuple(r[f] for f in fields) if len(fields) > 1 else r[fields[0]] for r in rows
    }


# ---- overview --------------------------------------------------------------------------------


async def test_overview_counts_and_shares(client: httpx.AsyncClient, world: World):
    r = await client.get(f"{BASE}/overview", headers=world.manager.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["timezone"] == "Asia/Shanghai"
    assert body["total"] == 7
    dims = body["dimensions"]
    assert _by_key(dims["source"], "count", "share") == {
        "exhibition": (3, 0.4286),
        "referral": (2, 0.2857),
        "website_form": (1, 0.1429),
        None: (1, 0.1429),
    }
    assert dims["source"][0]["label"] == "展会"
    assert dims["source"][-1] == {"key": None, "label": "未填写", "count": 1, "share": 0.1429}
    assert _by_key(dims["cooperation_status"], "count") == {
        "active": 3,
        "not_started": 3,
        "paused": 1,
    }
    assert _by_key(dims["value_tier"], "count") == {
        "high_value": 2,
        "normal": 2,
        "churn_risk": 2,
        "potential": 1,
    }
    assert _by_key(dims["lifecycle"], "count") == {
        "potential": 3,
        "existing": 2,
        "new": 1,
        "churned": 1,
    }
    assert _by_key(dims["industry"], "count", "label") == {
        "I": (2, "信息传输、软件和信息技术服务业"),
        "A": (1, "农、林、牧、渔业"),
        None: (4, "未填写"),
    }
    assert _by_key(dims["region"], "count") == {"北京": 2, "上海": 1, "深圳": 1, None: 3}
    assert _by_key(dims["owner"], "count", "label") == {
        str(world.s1.id): (3, "王销售"),
        str(world.s2.id): (3, "s2@example.com"),
        None: (1, "公海（无负责人）"),
    }


async def test_overview_time_range_is_local_days(client: httpx.AsyncClient, world: World):
    params = {"from": "2025-03-03", "to": "2025-03-09"}
    r = await client.get(f"{BASE}/overview", params=params, headers=world.manager.headers)
    assert r.status_code == 200, r.text
    # Acquired 3-9 March in Shanghai: c1, c2, c3, c7 (c4 is 10 March 00:30, c6 first came in
    # December, c5 in February).
    assert r.json()["total"] == 4
    assert r.json()["period"] == {
        "start": "2025-03-03T00:00:00+08:00",
        "end": "2025-03-10T00:00:00+08:00",
    }
    utc = await client.get(
        f"{BASE}/overview", params={**params, "tz": "UTC"}, headers=world.manager.headers
    )
    # In UTC, c4 (Sunday 16:30 UTC) is inside; c1 (Monday 02:00 UTC) still is.
    assert utc.json()["total"] == 5


async def test_marketing_counts_exclude_customers_who_withdrew_consent(
    client: httpx.AsyncClient, world: World
):
    r = await client.get(f"{BASE}/overview", headers=world.marketing.headers)
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 6
    assert _by_key(r.json()["dimensions"]["source"], "count")["exhibition"] == 2


# ---- weekly ----------------------------------------------------------------------------------


async def test_weekly_report(client: httpx.AsyncClient, world: World):
    r = await client.get(f"{BASE}/weekly?week=2025-W10", headers=world.manager.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["period"] == {
        "week": "2025-W10",
        "start": "2025-03-03T00:00:00+08:00",
        "end": "2025-03-10T00:00:00+08:00",
    }
    new = body["new_customers"]
    assert new["total"] == 4
    assert _by_key(new["by_channel"], "count", "share") == {
        "exhibition": (3, 0.75),
        "referral": (1, 0.25),
    }

    response = body["response"]
    assert (response["window_hours"], response["inbound"], response["answered"]) == (24, 5, 2)
    assert (response["pending"], response["rate"]) == (0, 0.4)
    assert _by_key(response["by_channel"], "inbound", "answered", "rate") == {
        "phone": (3, 1, 0.3333),
        "wechat": (1, 0, 0.0),
        "email": (1, 1, 1.0),
    }

    tasks = body["tasks"]
    assert {k: tasks[k] for k in ("due", "on_time", "late", "open", "overdue", "cancelled")} == {
        "due": 5,
        "on_time": 2,
        "late": 1,
        "open": 1,
        "overdue": 1,
        "cancelled": 1,
    }
    assert (tasks["completion_rate"], tasks["on_time_rate"]) == (0.75, 0.5)
    by_assignee = _by_key(tasks["by_assignee"], "due", "completion_rate", "on_time_rate")
    assert by_assignee == {str(world.s1.id): (2, 1.0, 0.5), str(world.s2.id): (3, 0.5, 0.5)}

    cadence = body["cadence"]
    assert cadence["as_of"] == "2025-03-10T00:00:00+08:00"
    assert (cadence["customers"], cadence["compliant"], cadence["rate"]) == (3, 2, 0.6667)
    assert _by_key(cadence["by_tier"], "cadence_days", "customers", "compliant", "rate") == {
        "high_value": (7, 2, 1, 0.5),
        "potential": (14, 1, 1, 1.0),
    }
    assert _by_key(cadence["by_owner"], "customers", "compliant", "label") == {
        str(world.s1.id): (2, 2, "王销售"),
        str(world.s2.id): (1, 0, "s2@example.com"),
    }


async def test_weekly_response_window_and_time_zone(client: httpx.AsyncClient, world: World):
    r = await client.get(
        f"{BASE}/weekly",
        params={"week": "2025-W10", "response_hours": 72},
        headers=world.manager.headers,
    )
    assert (r.json()["response"]["answered"], r.json()["response"]["rate"]) == (3, 0.6)
    utc = await client.get(
        f"{BASE}/weekly", params={"week": "2025-W10", "tz": "UTC"}, headers=world.manager.headers
    )
    assert utc.status_code == 200, utc.text
    assert utc.json()["timezone"] == "UTC"
    assert utc.json()["period"]["start"] == "2025-03-03T00:00:00Z"
    assert utc.json()["new_customers"]["total"] == 5  # c4 too


async def test_weekly_for_marketing_leaves_out_hidden_customers(
    client: httpx.AsyncClient, world: World
):
    body = (
        await client.get(f"{BASE}/weekly?week=2025-W10", headers=world.marketing.headers)
    ).json()
    assert body["new_customers"]["total"] == 3
    assert (body["response"]["inbound"], body["response"]["answered"]) == (4, 2)
    assert (body["tasks"]["due"], body["tasks"]["on_time"]) == (4, 1)


# ---- monthly ---------------------------------------------------------------------------------


async def test_monthly_report(client: httpx.AsyncClient, world: World):
    r = await client.get(f"{BASE}/monthly?month=2025-03", headers=world.manager.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["period"] == {
        "month": "2025-03",
        "start": "2025-03-01T00:00:00+08:00",
        "end": "2025-04-01T00:00:00+08:00",
    }
    conv = {
        c["key"]: (c["transitions"], c["customers"], c["base"], c["rate"])
        for c in body["tier_conversion"]
    }
    assert conv == {
        "high_value>churn_risk": (1, 1, 2, 0.5),
        "normal>potential": (2, 2, 3, 0.6667),
        "potential>high_value": (1, 1, 3, 0.3333),
        "potential>normal": (1, 1, 3, 0.3333),
    }
    assert [c["key"] for c in body["tier_conversion"]] == list(conv)
    assert body["tier_conversion"][2]["label"] == "潜力客户→高价值客户"
    assert [(c["key"], c["rate"]) for c in body["lifecycle_conversion"]] == [("potential>new", 1.0)]

    roi = body["channel_roi"]
    assert [
        (i["key"], i["cost"], i["new_customers"], i["cost_per_customer"], i["deals"])
        for i in roi["items"]
    ] == [
        ("exhibition", "10000.00", 3, "3333.33", 3),
        ("referral", "2000.00", 1, "2000.00", 1),
        ("website_form", None, 1, None, 0),
        ("wechat", "500.00", 0, None, 0),
        (None, None, 0, None, 1),
    ]
    assert [(i["deal_amount"], i["roi"]) for i in roi["items"]] == [
        ("22000.00", 1.2),
        ("1000.00", -0.5),
        ("0.00", None),
        ("0.00", -1.0),
        ("800.00", None),
    ]
    assert (roi["cost"], roi["new_customers"], roi["deals"]) == ("12500.00", 5, 5)
    assert (roi["deal_amount"], roi["roi"]) == ("23800.00", 0.904)

    themes = body["themes"]
    assert themes["min_customers"] == 2
    assert themes["complaint"] == {
        "texts": 5,
        "items": [
            {"key": "产品质量", "label": "产品质量", "mentions": 3, "customers": 3, "share": 0.6},
            {"key": "发货", "label": "发货", "mentions": 3, "customers": 2, "share": 0.6},
        ],
    }
    assert themes["feedback"]["texts"] == 2
    assert [(t["key"], t["mentions"]) for t in themes["feedback"]["items"]] == [("安装", 2)]

    done = body["completeness"]
    assert (done["customers"], done["overall"], done["complete_customers"]) == (7, 0.7143, 2)
    assert (done["target"], done["meets_target"]) == (0.9, False)
    assert _by_key(done["fields"], "filled") == {
        "name": 7,
        "contact": 4,
        "industry": 3,
        "source": 6,
        "region": 4,
        "owner": 6,
    }


async def test_monthly_for_marketing(client: httpx.AsyncClient, world: World):
    body = (
        await client.get(f"{BASE}/monthly?month=2025-03", headers=world.marketing.headers)
    ).json()
    conv = {c["key"]: (c["customers"], c["base"]) for c in body["tier_conversion"]}
    assert conv == {
        "high_value>churn_risk": (1, 2),
        "normal>potential": (2, 2),
        "potential>high_value": (1, 2),
    }
    exhibition = body["channel_roi"]["items"][0]
    assert (exhibition["key"], exhibition["deals"], exhibition["deal_amount"]) == (
        "exhibition",
        2,
        "20000.00",
    )
    assert body["themes"]["complaint"]["texts"] == 4
    assert body["themes"]["complaint"]["items"][0]["share"] == 0.75
    assert body["completeness"]["customers"] == 6
    # No customer's contact details anywhere in a report.
    raw = str(body)
    assert "+8613800000001" not in raw and "c2@example.com" not in raw


async def test_amounts_need_contract_read(client: httpx.AsyncClient, world: World):
    token = tokens.issue_access(
        get_settings(), subject="service:1", role=None, scopes=["reports:read"]
    )
    r = await client.get(
        f"{BASE}/monthly?month=2025-03", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text
    roi = r.json()["channel_roi"]
    assert roi["deals"] == 5 and roi["deal_amount"] is None and roi["roi"] is None
    assert all(i["deal_amount"] is None and i["roi"] is None for i in roi["items"])


# ---- who may read, and CSV -------------------------------------------------------------------


@pytest.mark.parametrize("report", ["overview", "weekly", "monthly", "channel-costs"])
async def test_sales_reps_may_not_read_reports(
    client: httpx.AsyncClient, world: World, report: str
):
    """Reps have no reports:read: a report over their own customers plus the shared pool
    would read as company figures, and channel costs are company data."""
    r = await client.get(f"{BASE}/{report}", headers=world.sales.headers)
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"


async def test_csv_on_request(client: httpx.AsyncClient, world: World):
    r = await client.get(
        f"{BASE}/weekly?week=2025-W10",
        headers={**world.manager.headers, "Accept": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="report-weekly-2025-W10.csv"' in r.headers["content-disposition"]
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == ["section", "key", "label", "metric", "value"]
    assert ["report", "", "", "timezone", "Asia/Shanghai"] in rows
    assert ["period", "", "", "week", "2025-W10"] in rows
    assert ["new_customers.by_channel", "exhibition", "展会", "count", "3"] in rows
    assert ["response", "", "", "rate", "0.4"] in rows
    assert ["cadence.by_tier", "high_value", "高价值客户", "compliant", "1"] in rows
    assert ["tasks.by_assignee", str(world.s1.id), "王销售", "late", "1"] in rows

    monthly = await client.get(
        f"{BASE}/monthly?month=2025-03",
        headers={**world.manager.headers, "Accept": "application/json;q=0.5, text/csv"},
    )
    rows = list(csv.reader(io.StringIO(monthly.content.decode("utf-8-sig"))))
    assert ["themes.complaint.items", "产品质量", "产品质量", "mentions", "3"] in rows
    assert ["channel_roi.items", "", "未填写", "deal_amount", "800.00"] in rows

    json_preferred = await client.get(
        f"{BASE}/overview",
        headers={**world.manager.headers, "Accept": "text/csv;q=0.1, application/json"},
    )
    assert json_preferred.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "query",
    [
        "weekly?week=2025-W54",
        "weekly?week=1900-W01",
        "weekly?week=2025-10",
        "monthly?month=2025-13",
        "monthly?month=2025-3",
        "overview?tz=Mars/Olympus",
        "overview?tz=../etc/passwd",
        "overview?from=2025-03-09&to=2025-03-01",
    ],
)
async def test_bad_periods_are_422(client: httpx.AsyncClient, world: World, query: str):
    r = await client.get(f"{BASE}/{query}", headers=world.manager.headers)
    assert r.status_code == 422, r.text


async def test_week_in_progress_by_default(client: httpx.AsyncClient, world: World):
    r = await client.get(f"{BASE}/weekly", headers=world.manager.headers)
    assert r.status_code == 200, r.text
    now = datetime.now(SH)
    assert r.json()["period"]["week"] == f"{now.isocalendar().year}-W{now.isocalendar().week:02d}"
    assert r.json()["new_customers"]["total"] == 0


# ---- channel costs ---------------------------------------------------------------------------


async def test_channel_costs_are_an_admin_input(
    client: httpx.AsyncClient, engine: AsyncEngine, world: World
):
    url = f"{BASE}/channel-costs"
    body = {
        "month": "2025-04",
        "costs": [
            {"channel": "exhibition", "amount": "8000"},
            {"channel": "转介绍", "amount": "1500.50", "note": "老客户礼品"},
        ],
    }
    assert (await client.put(url, json=body, headers=world.manager.headers)).status_code == 403
    r = await client.put(url, json=body, headers=world.admin.headers)
    assert r.status_code == 200, r.text
    assert [(i["channel"], i["label"], i["month"], i["amount"]) for i in r.json()["items"]] == [
        ("exhibition", "展会", "2025-04", "8000.00"),
        ("referral", "转介绍", "2025-04", "1500.50"),
    ]
    # A month's entry is replaced whole.
    body["costs"] = [{"channel": "referral", "amount": "1000"}]
    r = await client.put(url, json=body, headers=world.admin.headers)
    assert [i["channel"] for i in r.json()["items"]] == ["referral"]

    listed = await client.get(url, headers=world.manager.headers)
    assert [(i["month"], i["channel"]) for i in listed.json()["items"]] == [
        ("2025-04", "referral"),
        ("2025-03", "exhibition"),
        ("2025-03", "referral"),
        ("2025-03", "wechat"),
    ]
    march = await client.get(url, params={"month": "2025-03"}, headers=world.marketing.headers)
    assert len(march.json()["items"]) == 3

    async with engine.connect() as conn:
        audited = (
            await conn.execute(
                text(
                    "SELECT entity_id, changes FROM audit_log "
                    "WHERE action = 'reports.channel_costs_update' ORDER BY id"
                )
            )
        ).all()
    assert [row[0] for row in audited] == ["2025-04", "2025-04"]
    assert audited[1][1]["exhibition"] == {"before": "8000.00", "after": None}


@pytest.mark.parametrize(
    "costs",
    [
        [{"channel": "no_such_channel", "amount": "1"}],
        [{"channel": "exhibition", "amount": "1"}, {"channel": "展会", "amount": "2"}],
        [{"channel": "exhibition", "amount": "-1"}],
        [{"channel": "exhibition", "amount": "1", "surprise": True}],
    ],
)
async def test_channel_cost_validation(
    client: httpx.AsyncClient, world: World, costs: list[dict[str, Any]]
):
    r = await client.put(
        f"{BASE}/channel-costs",
        json={"month": "2025-04", "costs": costs},
        headers=world.admin.headers,
    )
    assert r.status_code == 422, r.text
