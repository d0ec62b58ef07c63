"""The scheduled sweep inside each API process. Every process runs this loop; the advisory
lock and the "finished recently" check make one sweep per interval across all of them."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.segments import service

log = logging.getLogger(__name__)


async def sweep_once(maker: async_sessionmaker[AsyncSession], interval_seconds: float) -> bool:
    """One scheduled attempt; True when this process ran the sweep."""
    async with maker() as session, session.begin():
        result = await service.run_sweep(
            session,
            cause="sweep",
            # Another process that swept within most of the interval has done our work.
            skip_if_newer_than=timedelta(seconds=interval_seconds * 0.8),
        )
    return result is not None


async def sweep_forever(maker: async_sessionmaker[AsyncSession], interval_seconds: float) -> None:
    while True:
        # Jitter spreads processes started together so they do not all wake at once.
        jitter = 0.9 + secrets.randbelow(201) / 1000
        await asyncio.sleep(interval_seconds * jitter)
        try:
            await sweep_once(maker, interval_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A failed sweep (database away, timeout) is retried at the next interval.
            log.exception("segmentation sweep failed")
