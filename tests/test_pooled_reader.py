"""The hot read's pooled connection (`rawsql.PooledReader`, `db.pooled_read`): statements run in
autocommit, the connection always goes back to the pool, driver errors arrive as SQLAlchemy's
(a lost connection invalidated), and listeners still see every statement."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from app.core import rawsql
from app.core.config import get_settings
from app.core.db import build_engine, pooled_read
from tests.factories import make_user

PID = text("SELECT pg_backend_pid()")


async def _pid_of(reader: rawsql.PooledReader) -> int:
    pid: int = await reader.fairy.driver_connection.fetchval("SELECT pg_backend_pid()")
    return pid


@pytest.fixture
async def pool(database_url: str) -> Any:
    """An engine of its own, so the pool's counts are this test's alone."""
    engine = build_engine(database_url, get_settings())
    try:
        yield engine
    finally:
        await engine.dispose()


async def _raw_one(reader: rawsql.PooledReader, sql: str) -> list[dict[str, Any]]:
    return await rawsql.raw_fetch(reader, ("test-pooled", sql), text(sql), {})


async def test_a_hot_statement_runs_outside_any_transaction_and_the_connection_goes_back(
    pool: AsyncEngine,
):
    async with pooled_read(pool) as reader:
        xid = "SELECT pg_current_xact_id()::text AS xid"
        first, second = await _raw_one(reader, xid), await _raw_one(reader, xid)
        # No BEGIN was sent: each statement is its own transaction, nothing is left open.
        assert first != second
        assert not reader.fairy.driver_connection.is_in_transaction()
        assert reader.sync_connection is None  # no SQLAlchemy Connection was made for it
        assert pool.sync_engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    assert pool.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_core_statements_run_in_autocommit_on_the_same_connection(
    pool: AsyncEngine, engine: AsyncEngine
):
    async with pooled_read(pool) as reader:
        hot_pid = await _pid_of(reader)
        assert await reader.scalar(PID) == hot_pid  # the same pooled connection, wrapped
        assert reader.sync_connection is not None
        await reader.execute(text("CREATE TEMP TABLE IF NOT EXISTS t_pooled (x int)"))
        await reader.execute(text("INSERT INTO t_pooled VALUES (1)"))
        # Autocommit: nothing waits for a commit, no transaction is left open.
        assert not reader.fairy.driver_connection.is_in_transaction()
        rows = await _raw_one(reader, "SELECT count(*) AS n FROM t_pooled")
        assert rows == [{"n": 1}]
    assert pool.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    # Checked in as the reader engine's connections are: its autocommit reset, so a plain
    # checkout of the same connection runs its statements in a transaction again.
    async with pool.connect() as conn:
        assert await conn.scalar(PID) == hot_pid
        assert (await conn.get_raw_connection()).dbapi_connection.autocommit is False
        assert conn.in_transaction()


async def test_a_lost_connection_is_a_sqlalchemy_error_and_is_not_reused(
    pool: AsyncEngine, engine: AsyncEngine
):
    async with pooled_read(pool) as reader:
        lost_pid = await _pid_of(reader)
        async with engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": lost_pid})
        await asyncio.sleep(0.3)  # the backend exits
        with pytest.raises(DBAPIError) as caught:
            await _raw_one(reader, "SELECT 1 AS one")
        # Raised as every other statement's error is: the API answers 503 and the pool drops it.
        assert caught.value.connection_invalidated
    assert pool.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with pooled_read(pool) as reader:
        assert await _pid_of(reader) != lost_pid
        assert await _raw_one(reader, "SELECT 1 AS one") == [{"one": 1}]


async def test_an_error_inside_the_block_still_returns_the_connection(pool: AsyncEngine):
    with pytest.raises(DBAPIError):
        async with pooled_read(pool) as reader:
            await _raw_one(reader, "SELECT 1 / 0 AS boom")
    with pytest.raises(RuntimeError):
        async with pooled_read(pool) as reader:
            await reader.scalar(select(1))
            raise RuntimeError("the handler failed")
    assert pool.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with pooled_read(pool) as reader:  # and the connection is usable again
        assert await _raw_one(reader, "SELECT 2 AS two") == [{"two": 2}]


async def test_listeners_see_the_hot_statement_with_a_connection(pool: AsyncEngine):
    seen: list[tuple[type, str]] = []

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append((type(conn), statement))

    event.listen(pool.sync_engine, "after_cursor_execute", record)
    async with pooled_read(pool) as reader:
        await _raw_one(reader, "SELECT 3 AS three")
    assert seen == [(Connection, "SELECT 3 AS three")]
    assert pool.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_the_hot_get_checks_its_connection_in_on_every_answer(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    """Found, not found and hidden: each hot get gives its connection back to the pool."""
    rep = await make_user(engine, role=Role.sales)
    other = await make_user(engine, role=Role.sales)
    created = await client.post("/api/v1/customers", json={"name": "池中连接"}, headers=rep.headers)
    code = created.json()["code"]
    before = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
    found = await client.get(f"/api/v1/customers/{code}", headers=rep.headers)
    missing = await client.get(f"/api/v1/customers/{code}9", headers=rep.headers)
    hidden = await client.get(f"/api/v1/customers/{code}", headers=other.headers)
    assert found.status_code == 200 and found.json()["name"] == "池中连接"
    assert missing.status_code == 404 and hidden.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert engine.sync_engine.pool.checkedout() == before  # type: ignore[attr-defined]
