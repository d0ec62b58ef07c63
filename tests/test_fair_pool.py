"""The connection pool serves waiting requests in the order they came (`app.core.fairqueue`): a
returned connection goes to the longest waiter, never to a request that asks after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.config import get_settings
from app.core.db import build_engine
from app.core.fairqueue import FairAsyncQueue


@pytest.fixture
async def one_connection(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The app's engine with a pool of one connection and a short wait for it."""
    settings = get_settings().model_copy(
        update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout_seconds": 0.3}
    )
    engine = build_engine(database_url, settings)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _until_waiting(engine: AsyncEngine, count: int) -> None:
    queue: Any = engine.pool._pool  # type: ignore[attr-defined]
    for _ in range(200):
        if queue.waiting() == count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"expected {count} waiters, found {queue.waiting()}")


async def test_a_returned_connection_goes_to_the_longest_waiter_not_to_a_newcomer(
    one_connection: AsyncEngine,
):
    order: list[str] = []

    async def use(name: str) -> None:
        async with one_connection.connect() as conn:
            order.append(name)
            await conn.execute(text("SELECT 1"))

    held = await one_connection.connect()
    await held.execute(text("SELECT 1"))
    first = asyncio.create_task(use("first"))
    await _until_waiting(one_connection, 1)
    second = asyncio.create_task(use("second"))
    await _until_waiting(one_connection, 2)
    # Give the connection back and, in the same turn of the event loop, ask again: the two
    # who waited come first (asyncio.Queue's way, the newcomer would take it).
    await held.close()
    newcomer = asyncio.create_task(use("newcomer"))
    again = await one_connection.connect()
    order.append("releaser")
    await again.close()
    await asyncio.gather(first, second, newcomer)
    assert order == ["first", "second", "releaser", "newcomer"]
    assert one_connection.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_waiter_that_times_out_leaves_the_line(one_connection: AsyncEngine):
    held = await one_connection.connect()
    await held.execute(text("SELECT 1"))
    with pytest.raises(exc.TimeoutError):
        await one_connection.connect()
    await held.close()
    # The connection is idle again, not handed to the waiter that gave up.
    async with one_connection.connect() as conn:
        assert await conn.scalar(text("SELECT 2")) == 2
    assert one_connection.pool.checkedin() == 1  # type: ignore[attr-defined]


async def test_a_waiter_cancelled_after_being_handed_a_connection_passes_it_on(
    one_connection: AsyncEngine,
):
    got: list[AsyncConnection] = []

    async def wait_for_one() -> None:
        conn = await one_connection.connect()
        got.append(conn)

    held = await one_connection.connect()
    await held.execute(text("SELECT 1"))
    cancelled = asyncio.create_task(wait_for_one())
    await _until_waiting(one_connection, 1)
    next_in_line = asyncio.create_task(wait_for_one())
    await _until_waiting(one_connection, 2)
    await held.close()  # handed to the first waiter, which is cancelled before it runs
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await asyncio.wait_for(next_in_line, 2)
    assert len(got) == 1
    assert await got[0].scalar(text("SELECT 3")) == 3
    await got[0].close()
    assert one_connection.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert one_connection.pool.checkedin() == 1  # type: ignore[attr-defined]


def test_a_waiter_left_from_a_closed_event_loop_is_skipped():
    queue: FairAsyncQueue[str] = FairAsyncQueue(maxsize=2)
    loop = asyncio.new_event_loop()
    queue._waiters.append(loop.create_future())  # a wait abandoned with its loop
    loop.close()
    queue.put_nowait("connection")
    assert queue.get_nowait() == "connection"
