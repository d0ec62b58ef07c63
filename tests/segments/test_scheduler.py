"""The scheduled sweep started from the application's lifespan."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings, get_settings
from app.main import create_app


async def _sweeps(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM segment_sweeps")) or 0)


async def test_the_lifespan_runs_sweeps_on_schedule(engine: AsyncEngine, database_url: str):
    settings = Settings(**{**get_settings().model_dump(), "sweep_interval_seconds": 0.1})
    app = create_app(settings, database_url=database_url)
    async with app.router.lifespan_context(app):
        for _ in range(100):
            await asyncio.sleep(0.05)
            if await _sweeps(engine) >= 2:
                break
    assert await _sweeps(engine) >= 2
    # Stopped with the application: no sweep runs after shutdown.
    after = await _sweeps(engine)
    await asyncio.sleep(0.3)
    assert await _sweeps(engine) == after


async def test_no_schedule_when_the_interval_is_zero(engine: AsyncEngine, database_url: str):
    settings = Settings(**{**get_settings().model_dump(), "sweep_interval_seconds": 0})
    app = create_app(settings, database_url=database_url)
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.3)
    assert await _sweeps(engine) == 0
