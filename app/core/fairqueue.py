"""A connection pool that serves waiting requests first come, first served.

SQLAlchemy's async pool queue (`AsyncAdaptedQueue`, an `asyncio.Queue`) takes an idle connection
without waiting whenever one is there. When a connection comes back, the request that has waited
longest is woken, but it runs only on a later turn of the event loop: a request arriving in
between finds the connection idle and takes it, and the woken one, finding the queue empty,
waits again at the back of the line. Under load (more requests in flight than connections) the
unlucky ones wait several turns, and the latency's tail grows.

Here a returned connection is handed straight to the longest waiter, and a newcomer waits
whenever anyone else does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any, Generic, TypeVar

from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util.concurrency import await_
from sqlalchemy.util.queue import Empty, Full, QueueCommon

T = TypeVar("T")


class FairAsyncQueue(QueueCommon[T], Generic[T]):
    """The pool's queue of idle connections, with its waiters in a FIFO line.

    Invariant: while a connection is idle, nobody waits (a returned connection goes to the first
    live waiter, if any, before it is put in the idle deque)."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo
        self._idle: deque[T] = deque()
        self._waiters: deque[asyncio.Future[T]] = deque()

    def empty(self) -> bool:
        return not self._idle

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._idle)

    def qsize(self) -> int:
        return len(self._idle)

    def waiting(self) -> int:
        """Requests waiting for a connection now."""
        return sum(1 for w in self._waiters if not w.done())

    def put_nowait(self, item: T) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            # Skipped: a waiter cancelled or timed out (it took itself out), or one left over
            # from an event loop that has closed since (tests run one loop after another).
            if not waiter.done() and not waiter.get_loop().is_closed():
                waiter.set_result(item)
                return
        if self.full():
            raise Full()
        self._idle.append(item)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        # Never blocks: the pool holds at most maxsize connections.
        self.put_nowait(item)

    def get_nowait(self) -> T:
        if not self._idle:
            raise Empty()
        return self._idle.pop() if self.use_lifo else self._idle.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        if self._idle or not block:
            return self.get_nowait()
        item: T = await_(self._wait(limit=timeout))
        return item

    async def _wait(self, *, limit: float | None) -> T:
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(limit):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # Handed a connection in the same turn as the timeout or cancellation: pass it
                # on to the next in line rather than lose it.
                self.put_nowait(waiter.result())
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise Empty() from None
            raise


class FairAsyncQueuePool(AsyncAdaptedQueuePool):
    """`AsyncAdaptedQueuePool` with `FairAsyncQueue` (the pool create_async_engine uses)."""

    _queue_class: Any = FairAsyncQueue
