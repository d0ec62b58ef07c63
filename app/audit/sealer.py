"""The background sealer inside each API process: chains committed audit rows about once a
second. Every process runs it; a process finding another one at work skips its turn."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit import service

log = logging.getLogger(__name__)

SEAL_INTERVAL_SECONDS = 1.0


async def seal_forever(
    engine: AsyncEngine, interval_seconds: float = SEAL_INTERVAL_SECONDS
) -> None:
    failing = False
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await service.seal_pending(engine, wait=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Unsealed rows stay protected by the triggers; the next turn (or a read) seals them.
            # Logged once per outage, not every second.
            if not failing:
                log.warning(
                    "audit sealing failed, retrying every %ss: %s",
                    interval_seconds,
                    type(exc).__name__,
                )
            failing = True
        else:
            if failing:
                log.info("audit sealing recovered")
            failing = False
