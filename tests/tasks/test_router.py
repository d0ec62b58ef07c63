"""Tasks (create, assign, complete, cancel, list) and reminders per role."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from app.segments.rules import DEFAULT_RULES
from tests.factories import TestCustomer, TestUser, add_interaction, make_user, seed_customer

API = "/api/v1"


def _in(**kw: float) -> str:
    return (datetime.now(UTC) + timedelta(**kw)).isoformat()


async def _task(
    client: httpx.AsyncClient, user: TestUser, customer: TestCustomer, **fields: Any
) -> httpx.Response:
    body = {"customer_code": customer.code, "title": "电话回访", "due_at": _in(days=1), **fields}
    return await client.post(f"{API}/tasks", json=body, headers=user.headers)


async def test_create_complete_cancel_and_reopen(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    customer = await seed_customer(engine, owner_id=rep.id)
    r = await _task(client, rep, customer, note="确认预算")
    assert r.status_code == 201, r.text
    task = r.json()
    assert (task["assignee_id"], task["status"], task["overdue"]) == (rep.id, "open", False)
    url = f"{API}/tasks/{task['id']}"
    done = await client.patch(url, json={"status": "done"}, headers=rep.headers)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done" and done.json()["completed_at"] is not None
    reopened = await client.patch(url, json={"status": "open"}, headers=rep.headers)
    assert reopened.json()["completed_at"] is None
    cancelled = await client.patch(
        url, json={"status": "已取消"}, headers={**rep.headers, "If-Match": '"3"'}
    )
    assert cancelled.json()["status"] == "cancelled"
    stale = await client.patch(url, json={"title": "x"}, headers={**rep.headers, "If-Match": '"3"'})
    assert stale.status_code == 412
    assert (await client.patch(url, json={"status": None}, headers=rep.headers)).status_code == 422
    assert (
        await client.patch(url, json={"status": "lost"}, headers=rep.headers)
    ).status_code == 422
    async with engine.connect() as conn:
        actions = (
            await conn.execute(text("SELECT action FROM audit_log WHERE entity_type = 'task'"))
        ).scalars()
        assert list(actions) == ["task.create", "task.update", "task.update", "task.update"]


async def test_assignment_rules(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    other_rep = await make_user(engine)
    agent = await make_user(engine, role=Role.service)
    customer = await seed_customer(engine, owner_id=rep.id)
    blind = await _task(client, rep, customer, assignee_id=other_rep.id)
    assert blind.status_code == 422  # cannot see the customer
    assert (await _task(client, rep, customer, assignee_id=999999)).status_code == 422
    task = (await _task(client, rep, customer, assignee_id=agent.id)).json()
    url = f"{API}/tasks/{task['id']}"
    # The agent (service role) can change every customer's tasks; reassign back to the rep.
    back = await client.patch(url, json={"assignee_id": rep.id}, headers=agent.headers)
    assert back.status_code == 200 and back.json()["assignee_id"] == rep.id
    # A pool customer: the rep sees it but does not own it. Assigned a task there, the rep may
    # complete it, but not reassign or reschedule it.
    pooled = await seed_customer(engine, owner_id=None)
    pool_task = (await _task(client, agent, pooled, assignee_id=rep.id)).json()
    pool_url = f"{API}/tasks/{pool_task['id']}"
    moved = await client.patch(pool_url, json={"due_at": _in(days=5)}, headers=rep.headers)
    assert moved.status_code == 403
    finished = await client.patch(pool_url, json={"status": "done"}, headers=rep.headers)
    assert finished.status_code == 200
    # Service accounts and others without a user id must name the assignee.
    assert (await _task(client, rep, pooled)).status_code == 403  # pool: claim first


async def test_list_by_assignee_status_and_due(client: httpx.AsyncClient, engine: AsyncEngine):
    manager = await make_user(engine, role=Role.manager)
    rep = await make_user(engine)
    customer = await seed_customer(engine, owner_id=rep.id)
    for days in (3, -2, 1, 5):
        await _task(client, manager, customer, assignee_id=rep.id, due_at=_in(days=days))
    mine = await _task(client, manager, customer, due_at=_in(days=2))
    await client.patch(
        f"{API}/tasks/{mine.json()['id']}", json={"status": "done"}, headers=manager.headers
    )

    async def listed(user: TestUser, **params: Any) -> list[dict[str, Any]]:
        r = await client.get(f"{API}/tasks", params=params, headers=user.headers)
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    by_rep = await listed(manager, assignee=str(rep.id))
    assert [t["due_at"] for t in by_rep] == sorted(t["due_at"] for t in by_rep)
    assert len(by_rep) == 4
    assert len(await listed(rep, assignee="me")) == 4
    assert len(await listed(manager, status="done")) == 1
    assert len(await listed(manager, status=["open", "done"])) == 5
    overdue = await listed(rep, overdue="true")
    assert len(overdue) == 1 and overdue[0]["overdue"] is True
    assert len(await listed(manager, due_from=_in(days=0), due_to=_in(days=4))) == 3
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = (await client.get(f"{API}/tasks", params=params, headers=manager.headers)).json()
        pages.extend(t["id"] for t in r["items"])
        cursor = r["next_cursor"]
        if not cursor:
            break
    assert len(pages) == 5 and len(set(pages)) == 5


async def test_reminders_per_role(client: httpx.AsyncClient, engine: AsyncEngine):
    rep = await make_user(engine)
    other = await make_user(engine)
    manager = await make_user(engine, role=Role.manager)
    agent = await make_user(engine, role=Role.service)

    stale = await seed_customer(engine, owner_id=rep.id, created_days_ago=100)
    await add_interaction(engine, stale, days_ago=31)
    fresh = await seed_customer(engine, owner_id=rep.id, created_days_ago=100)
    await add_interaction(engine, fresh, days_ago=29)
    theirs = await seed_customer(engine, owner_id=other.id, created_days_ago=100)
    await add_interaction(engine, theirs, days_ago=40)
    await seed_customer(engine, owner_id=None, created_days_ago=100)  # pool: nobody's reminder
    # Cadence: high value weekly, potential every two weeks.
    big = await seed_customer(engine, owner_id=rep.id, created_days_ago=100)
    for i in range(3):
        await add_interaction(engine, big, days_ago=8 + i, kind="purchase", amount="1")
    keen = await seed_customer(engine, owner_id=rep.id, created_days_ago=100)
    await add_interaction(engine, keen, days_ago=13)
    await add_interaction(engine, keen, days_ago=12)
    admin = await make_user(engine, role=Role.admin)
    await client.post(f"{API}/segments/recompute", headers=admin.headers)

    overdue_mine = await _task(client, manager, stale, assignee_id=rep.id, due_at=_in(hours=-1))
    await _task(client, manager, theirs, assignee_id=other.id, due_at=_in(hours=-1))
    await _task(client, manager, theirs, assignee_id=other.id, due_at=_in(days=1))
    await _task(client, manager, fresh, assignee_id=agent.id, due_at=_in(hours=-3))

    async def reminders(user: TestUser, **params: Any) -> dict[str, Any]:
        r = await client.get(f"{API}/reminders", params=params, headers=user.headers)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def codes(section: dict[str, Any]) -> set[str]:
        return {c["code"] for c in section["items"]}

    mine = await reminders(rep)
    assert mine["scope"] == "mine"
    assert [t["id"] for t in mine["overdue_tasks"]["items"]] == [overdue_mine.json()["id"]]
    assert codes(mine["stale_customers"]) == {stale.code}
    assert mine["stale_customers"]["items"][0]["days_since_follow_up"] == 31
    assert codes(mine["cadence_due"]) == {big.code}  # keen: 12 days < 14; big: 8 days > 7
    assert mine["cadence_due"]["items"][0]["cadence_days"] == 7
    assert mine["cadence_days"] == {"high_value": 7, "potential": 14}
    # A rep asking for everything still gets only their own.
    assert await reminders(rep, scope="all") == mine

    theirs_view = await reminders(other)
    assert codes(theirs_view["stale_customers"]) == {theirs.code}
    assert theirs_view["overdue_tasks"]["count"] == 1

    assert (await reminders(agent))["overdue_tasks"]["count"] == 1
    assert (await reminders(agent))["stale_customers"]["count"] == 0  # owns no customers

    manager_mine = await reminders(manager)
    assert manager_mine["overdue_tasks"]["count"] == 0
    team = await reminders(manager, scope="all")
    assert team["overdue_tasks"]["count"] == 3
    assert codes(team["stale_customers"]) == {stale.code, theirs.code}

    # Thresholds come from the stored rules.
    rules = copy.deepcopy(DEFAULT_RULES.model_dump(mode="json"))
    rules["reminders"]["stale_days"] = 20
    rules["reminders"]["cadence_days"] = {"potential": 10}
    assert (
        await client.put(f"{API}/segments/rules", json=rules, headers=admin.headers)
    ).status_code == 200
    changed = await reminders(rep)
    assert codes(changed["stale_customers"]) == {stale.code, fresh.code}
    assert codes(changed["cadence_due"]) == {keen.code}
    assert changed["stale_customers"]["threshold_days"] == 20


async def test_marketing_has_no_tasks(client: httpx.AsyncClient, engine: AsyncEngine):
    marketer = await make_user(engine, role=Role.marketing)
    assert (await client.get(f"{API}/reminders", headers=marketer.headers)).status_code == 403
    assert (await client.get(f"{API}/tasks", headers=marketer.headers)).status_code == 403
