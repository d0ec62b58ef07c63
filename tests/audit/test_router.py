"""The audit log: same-transaction writes, append-only enforcement, hash chain verification."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit import service as audit
from app.auth.permissions import Role
from app.core.db import build_sessionmaker
from tests.factories import make_user


async def _audit_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM audit_log")) or 0)


async def test_change_and_audit_row_land_together(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    r = await client.post(
        "/api/v1/users",
        json={"email": "zhao@example.com", "password": "long-enough-pw", "role": "service"},
        headers=admin.headers,
    )
    assert r.status_code == 201
    async with engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT actor, action, entity_id, request_id FROM audit_log"))
        ).one()
    assert row.actor == f"user:{admin.id}"
    assert row.action == "user.create"
    assert row.entity_id == str(r.json()["id"])
    assert row.request_id == r.headers["x-request-id"]


async def test_failed_transaction_leaves_neither_change_nor_audit(engine: AsyncEngine):
    maker = build_sessionmaker(engine)
    with pytest.raises(RuntimeError):
        async with maker() as session, session.begin():
            await session.execute(
                text("INSERT INTO users (email, password_hash, role) VALUES ('x@y.cn','h','sales')")
            )
            await audit.record(
                session, actor="test", action="user.create", entity_type="user", entity_id=1
            )
            raise RuntimeError("the request fails after both writes")
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM users")) == 0
    assert await _audit_count(engine) == 0


async def test_failed_request_leaves_no_audit_row(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    await client.post(
        "/api/v1/users",
        json={"email": "dup@example.com", "password": "long-enough-pw", "role": "sales"},
        headers=admin.headers,
    )
    before = await _audit_count(engine)
    dup = await client.post(
        "/api/v1/users",
        json={"email": "dup@example.com", "password": "long-enough-pw", "role": "sales"},
        headers=admin.headers,
    )
    assert dup.status_code == 409
    assert await _audit_count(engine) == before


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'someone-else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
)
async def test_database_rejects_changes_to_audit_rows(engine: AsyncEngine, statement: str):
    maker = build_sessionmaker(engine)
    async with maker() as session, session.begin():
        await audit.record(session, actor="test", action="x.create", entity_type="x")
    with pytest.raises(DBAPIError, match="append-only"):
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    assert await _audit_count(engine) == 1


async def _write_rows(engine: AsyncEngine, n: int) -> None:
    maker = build_sessionmaker(engine)
    for i in range(n):
        async with maker() as session, session.begin():
            await audit.record(
                session,
                actor="user:1",
                action="customer.update",
                entity_type="customer",
                entity_id=f"C2026112200{i}",
                changes={"name": {"before": "旧", "after": "新"}},
            )


async def test_verify_passes_on_intact_chain(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    await _write_rows(engine, 5)
    r = await client.get("/api/v1/audit/verify", headers=admin.headers)
    assert r.status_code == 200
    assert r.json() == {"ok": True, "rows_checked": 5, "first_broken_id": None, "reason": None}


async def test_verify_names_first_tampered_row(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    await _write_rows(engine, 5)
    # Sealed first: the chain covers rows once sealed (about a second after they commit).
    await audit.seal_pending(engine)
    async with engine.begin() as conn:
        ids = [r[0] for r in await conn.execute(text("SELECT id FROM audit_log ORDER BY id"))]
        # A superuser bypassing the triggers is exactly what the hash chain must expose.
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(
            text("UPDATE audit_log SET changes = '{}'::jsonb WHERE id = :id"), {"id": ids[2]}
        )
    r = await client.get("/api/v1/audit/verify", headers=admin.headers)
    body = r.json()
    assert body["ok"] is False
    assert body["first_broken_id"] == ids[2]
    assert "hash" in body["reason"]


async def test_verify_detects_deleted_row(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    await _write_rows(engine, 4)
    await audit.seal_pending(engine)
    async with engine.begin() as conn:
        ids = [r[0] for r in await conn.execute(text("SELECT id FROM audit_log ORDER BY id"))]
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": ids[1]})
    body = (await client.get("/api/v1/audit/verify", headers=admin.headers)).json()
    assert body["ok"] is False
    assert body["first_broken_id"] == ids[2]


async def test_chain_holds_under_concurrent_writers(engine: AsyncEngine, client: httpx.AsyncClient):
    admin = await make_user(engine, role=Role.admin)
    await asyncio.gather(*(_write_rows(engine, 5) for _ in range(8)))
    body = (await client.get("/api/v1/audit/verify", headers=admin.headers)).json()
    assert body == {"ok": True, "rows_checked": 40, "first_broken_id": None, "reason": None}


async def test_audit_list_filters_and_pages(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    await _write_rows(engine, 7)
    first = await client.get(
        "/api/v1/audit", params={"entity_type": "customer", "limit": 4}, headers=admin.headers
    )
    page1 = first.json()
    assert len(page1["items"]) == 4 and page1["next_cursor"]
    second = await client.get(
        "/api/v1/audit",
        params={"entity_type": "customer", "limit": 4, "cursor": page1["next_cursor"]},
        headers=admin.headers,
    )
    page2 = second.json()
    assert len(page2["items"]) == 3 and page2["next_cursor"] is None
    ids = [e["id"] for e in page1["items"] + page2["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 7
    one = await client.get(
        "/api/v1/audit", params={"entity_id": "C20261122003"}, headers=admin.headers
    )
    assert [e["entity_id"] for e in one.json()["items"]] == ["C20261122003"]


async def test_audit_needs_admin(client: httpx.AsyncClient, engine: AsyncEngine):
    manager = await make_user(engine, role=Role.manager)
    assert (await client.get("/api/v1/audit", headers=manager.headers)).status_code == 403
    assert (await client.get("/api/v1/audit/verify", headers=manager.headers)).status_code == 403


async def test_bad_cursor_is_422(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    r = await client.get("/api/v1/audit", params={"cursor": "!!!"}, headers=admin.headers)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "cursor"
