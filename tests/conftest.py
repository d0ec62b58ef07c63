"""Test database and client fixtures.

Tests run against real PostgreSQL: the server named by CRM_TEST_DATABASE_URL when set (CI sets
it to the local PostgreSQL 15), otherwise the embedded PostgreSQL 18. A fresh database is built
with `alembic upgrade head` once per session; every test starts from empty tables.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

# Settings are read once per process, so the test values go in before the app is imported.
os.environ.setdefault("CRM_JWT_SECRET", "test-secret-" + uuid.uuid4().hex)
os.environ.setdefault("CRM_ARGON2_MEMORY_KIB", "1024")
os.environ.setdefault("CRM_ARGON2_TIME_COST", "1")
os.environ.setdefault(
    "CRM_ENCRYPTION_KEYS", '{"t1": "' + base64.b64encode(os.urandom(32)).decode() + '"}'
)
os.environ.setdefault("CRM_ENCRYPTION_ACTIVE_KEY", "t1")
# The suite fires bursts from one address; the rate-limit test builds its own strict app.
os.environ.setdefault("CRM_RATE_LIMIT_PER_IP", "100000")
os.environ.setdefault("CRM_RATE_LIMIT_IP_BURST", "100000")
os.environ.setdefault("CRM_RATE_LIMIT_PER_PRINCIPAL", "100000")
os.environ.setdefault("CRM_RATE_LIMIT_PRINCIPAL_BURST", "100000")
os.environ.setdefault("CRM_BLIND_INDEX_KEY", base64.b64encode(os.urandom(32)).decode())
# Tests start sweeps themselves; a scheduled one would race them.
os.environ.setdefault("CRM_SWEEP_INTERVAL_SECONDS", "0")
os.environ.pop("DATABASE_URL", None)

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.cli import run_migrations
from app.core.config import get_settings
from app.core.db import (
    build_engine,
    build_sessionmaker,
    create_database,
    start_embedded,
    to_async_url,
)
from app.main import create_app

ROOT = Path(__file__).resolve().parent.parent


def _server_url() -> str:
    explicit = os.environ.get("CRM_TEST_DATABASE_URL")
    if explicit:
        return to_async_url(explicit)
    # One embedded server for the test runs, kept apart from the development data folder.
    url = start_embedded(ROOT / "var" / "pg-test")
    return url


def _admin_conn_url(url: str) -> str:
    return (
        make_url(url)
        .set(drivername="postgresql", database="postgres")
        .render_as_string(hide_password=False)
    )


async def _create_db(server_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_admin_conn_url(server_url))
    try:
        await create_database(conn, name)
    finally:
        await conn.close()


async def _drop_db(server_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_admin_conn_url(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    server = _server_url()
    name = f"crm_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create_db(server, name))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        run_migrations(url)
        yield url
    finally:
        asyncio.run(_drop_db(server, name))


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = build_engine(database_url, get_settings())
    yield eng
    await eng.dispose()


_TABLES: list[str] = []
_SEEDED: list[str] = []


async def _snapshot_seed_data(engine: AsyncEngine) -> None:
    """Remember the rows migrations seed (sources, categories, rules) to restore per test."""
    async with engine.begin() as conn:
        rows = await conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version' ORDER BY tablename"
            )
        )
        tables = [r[0] for r in rows]
        await conn.execute(text("CREATE SCHEMA IF NOT EXISTS test_seed"))
        for table in tables:
            has_rows = await conn.scalar(text(f'SELECT EXISTS (SELECT 1 FROM "{table}")'))
            if has_rows:
                await conn.execute(
                    text(f'CREATE TABLE test_seed."{table}" AS TABLE public."{table}"')
                )
                _SEEDED.append(table)
            else:
                _TABLES.append(table)


@pytest.fixture(autouse=True)
async def clean_tables(engine: AsyncEngine) -> None:
    """Every test starts from the freshly migrated state (audit triggers bypassed for this)."""
    from app.customers.repository import clear_definition_cache

    clear_definition_cache()
    if not _TABLES and not _SEEDED:
        await _snapshot_seed_data(engine)
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY CASCADE"))
        for table in _SEEDED:
            await conn.execute(text(f'DELETE FROM public."{table}"'))
            await conn.execute(
                text(
                    f'INSERT INTO public."{table}" OVERRIDING SYSTEM VALUE '
                    f'SELECT * FROM test_seed."{table}"'
                )
            )


@pytest.fixture(scope="session")
def app(engine: AsyncEngine, database_url: str):  # type: ignore[no-untyped-def]
    application = create_app(get_settings(), database_url=database_url)
    # ASGITransport runs no lifespan: hand the app the session's engine directly.
    application.state.engine = engine
    application.state.sessionmaker = build_sessionmaker(engine)
    return application


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
def fresh_engine_factory(database_url: str):  # type: ignore[no-untyped-def]
    """Engines of their own, for tests that need separate connections."""

    def factory() -> AsyncEngine:
        return create_async_engine(database_url)

    return factory
