"""A write's pooled connection (`rawsql.PooledWriter`, `db.pooled_write`, `WriteConnectionDep`):
one transaction, committed at the end of the block or rolled back on any error, hot and Core
statements alike; a failed commit or a lost connection writes nothing and is SQLAlchemy's error;
the connection always goes back to the pool."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core import rawsql
from app.core.config import Settings, get_settings
from app.core.db import build_engine, pooled_write

XID = "SELECT pg_current_xact_id()::text AS xid"


@pytest.fixture
async def pool(database_url: str) -> Any:
    """One connection only: every block of a test runs on the same one (its temp tables)."""
    settings = get_settings()
    engine = build_engine(
        database_url, Settings(**{**settings.model_dump(), "db_pool_size": 1, "db_max_overflow": 0})
    )
    try:
        async with pooled_write(engine) as conn:
            await conn.execute(
                text(
                    "CREATE TEMP TABLE t_written (x int, CONSTRAINT t_written_x UNIQUE (x) "
                    "DEFERRABLE INITIALLY DEFERRED)"
                )
            )
        yield engine
    finally:
        await engine.dispose()


async def _raw(conn: rawsql.PooledWriter, sql: str) -> list[dict[str, Any]]:
    return await rawsql.raw_fetch(conn, ("test-writer", sql), text(sql), {})


async def _rows(engine: AsyncEngine) -> list[int]:
    async with pooled_write(engine) as conn:
        return [r["x"] for r in await _raw(conn, "SELECT x FROM t_written ORDER BY x")]


def _checked_out(engine: AsyncEngine) -> int:
    return int(engine.sync_engine.pool.checkedout())  # type: ignore[attr-defined]


async def test_hot_and_core_statements_share_one_transaction_committed_at_the_end(
    pool: AsyncEngine,
):
    async with pooled_write(pool) as conn:
        first = await _raw(
            conn, "INSERT INTO t_written VALUES (1) RETURNING pg_current_xact_id()::text AS xid"
        )
        assert conn.sync_connection is None  # hot statements alone need no Connection
        await conn.execute(text("INSERT INTO t_written VALUES (2)"))
        assert await conn.scalar(text("SELECT pg_current_xact_id()::text")) == first[0]["xid"]
        assert (await _raw(conn, XID)) == first
    assert _checked_out(pool) == 0
    assert await _rows(pool) == [1, 2]


@pytest.mark.parametrize("core", [False, True])
async def test_an_error_in_the_block_rolls_everything_back(pool: AsyncEngine, core: bool):
    with pytest.raises(RuntimeError):
        async with pooled_write(pool) as conn:
            await _raw(conn, "INSERT INTO t_written VALUES (1)")
            if core:
                await conn.execute(text("INSERT INTO t_written VALUES (2)"))
            raise RuntimeError("the handler failed")
    assert _checked_out(pool) == 0
    assert await _rows(pool) == []


async def test_a_failed_commit_is_sqlalchemys_error_and_writes_nothing(pool: AsyncEngine):
    with pytest.raises(IntegrityError):  # the deferred unique check fails at COMMIT
        async with pooled_write(pool) as conn:
            await _raw(conn, "INSERT INTO t_written VALUES (7), (7) RETURNING x")
    assert _checked_out(pool) == 0
    assert await _rows(pool) == []  # and the connection serves the next transaction


async def test_a_connection_lost_before_the_commit_writes_nothing(
    pool: AsyncEngine, engine: AsyncEngine, database_url: str
):
    other_pool = build_engine(database_url, get_settings())
    try:
        with pytest.raises(DBAPIError) as caught:
            async with pooled_write(other_pool) as conn:
                await _raw(conn, "CREATE TEMP TABLE t_lost (x int)")
                pid = (await _raw(conn, "SELECT pg_backend_pid() AS pid"))[0]["pid"]
                async with engine.connect() as admin:
                    await admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                await asyncio.sleep(0.3)
        assert caught.value.connection_invalidated
        assert _checked_out(other_pool) == 0
        async with pooled_write(other_pool) as conn:  # a fresh connection, nothing half-done
            assert (await _raw(conn, "SELECT pg_backend_pid() AS pid"))[0]["pid"] != pid
    finally:
        await other_pool.dispose()


async def test_a_cancelled_block_gives_its_connection_back(pool: AsyncEngine):
    started = asyncio.Event()

    async def slow() -> None:
        async with pooled_write(pool) as conn:
            await _raw(conn, "INSERT INTO t_written VALUES (9)")
            started.set()
            await _raw(conn, "SELECT pg_sleep(5)")

    task = asyncio.create_task(slow())
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _checked_out(pool) == 0
    assert await _rows(pool) == []  # rolled back; the one connection serves again
