"""Hot statements compiled once and run on the session's asyncpg connection.

The hot paths skip SQLAlchemy's per-execution work (cache key, execution context, result
processing): the SQL is compiled once per shape and its rows decoded here. The statement is still
reported to SQLAlchemy's `after_cursor_execute` listeners (the bench records them), and driver
errors are raised as SQLAlchemy's (deadlocks retried, lost connections invalidated).

This leans on SQLAlchemy internals (`_bind_processors`, `_generate_cache_key`,
`_handle_dbapi_exception`, the asyncpg adapter's transaction start), pinned by uv.lock and
exercised by the tests of every hot route.
"""

from __future__ import annotations

from types import SimpleNamespace, TracebackType
from typing import Any, NoReturn

import orjson
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.util.concurrency import greenlet_spawn

_RAW: dict[Any, tuple[str, tuple[str, ...], dict[str, Any], dict[str, Any]]] = {}
# List filters combine into many statement shapes: keep the cache bounded (cleared when full).
_RAW_MAX = 2_000
# JSONB columns decoded wherever a hot statement returns them (customers: contacts, custom, tags).
JSON_COLUMNS = frozenset({"contacts", "custom", "tags"})


# Where a session keeps the connection of its current transaction, for the next statement.
_CONNECTION = "rawsql.connection"


class PooledReader:
    """A pooled connection checked out for one hot read, without SQLAlchemy's Connection around
    it: constructing that, setting the autocommit characteristic at checkout and resetting it at
    checkin cost ~45 µs, a tenth of a get-one request's CPU. Hot statements (`raw_fetch`) run on
    the driver connection outside any transaction (autocommit, as the reader engine's are).

    Anything else (`execute`, `scalar`: a miss's not-found checks; a driver error's translation;
    listeners of `after_cursor_execute`) wraps the same pooled connection, on first need, in the
    Connection `engine` (the autocommit reader engine) would have made: it then behaves, and
    is checked in, exactly as `engine.connect()`'s would.

    Use as `async with PooledReader(reader_engine) as conn:`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.fairy: Any = None
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> PooledReader:
        self.fairy = await greenlet_spawn(self._checkout)
        return self

    def _checkout(self) -> Any:
        sync_engine = self.engine.sync_engine
        try:
            return sync_engine.raw_connection()
        except self.dialect.loaded_dbapi.Error as err:  # as Connection() raises it: a DBAPIError
            Connection._handle_dbapi_exception_noconnection(err, self.dialect, sync_engine)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            await self._conn.close()
        elif self.fairy is not None:
            await greenlet_spawn(self.fairy.close)
        self.fairy = None

    @property
    def sync_connection(self) -> Connection | None:
        """The Connection wrapped around the pooled connection, once one was needed."""
        return None if self._conn is None else self._conn.sync_connection

    async def connection(self) -> AsyncConnection:
        """The pooled connection as an autocommit AsyncConnection (made on first call)."""
        if self._conn is None:
            if self.fairy is None:
                raise RuntimeError("PooledReader used outside its `async with`")
            sync = await greenlet_spawn(Connection, self.engine.sync_engine, self.fairy)
            self._conn = AsyncConnection(self.engine, sync)
        return self._conn

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return await (await self.connection()).execute(statement, parameters)

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return await (await self.connection()).scalar(statement, parameters)


async def connection_of(
    session: AsyncSession | AsyncConnection | PooledReader,
) -> AsyncConnection | PooledReader:
    """The connection a statement runs on: the bare connection (or pooled reader) itself, or
    the one holding the session's transaction (begun here when there is none).

    `AsyncSession.connection()` hops into a greenlet on every call; a write request runs four
    to ten statements in one transaction, so the connection is remembered per transaction and
    asked for again only when that transaction has ended (commit, rollback) or failed."""
    if isinstance(session, AsyncConnection | PooledReader):
        return session
    hit = session.info.get(_CONNECTION)
    if hit is not None:
        transaction = session.sync_session.get_transaction()
        if transaction is hit[0] and transaction.is_active:
            cached: AsyncConnection = hit[1]
            return cached
    conn = await session.connection()
    session.info[_CONNECTION] = (session.sync_session.get_transaction(), conn)
    return conn


def _compiled(
    key: Any, build: Any, conn: AsyncConnection | PooledReader
) -> tuple[str, tuple[str, ...], dict[str, Any], dict[str, Any]]:
    hit = _RAW.get(key)
    if hit is None:
        stmt = build() if callable(build) else build
        compiled = stmt.compile(dialect=conn.dialect)
        processors = dict(compiled._bind_processors)  # what SQLAlchemy applies to bound values
        hit = (
            compiled.string,
            tuple(compiled.positiontup or ()),
            compiled.construct_params(_check=False),
            processors,
        )
        if len(_RAW) >= _RAW_MAX:
            _RAW.clear()
        _RAW[key] = hit
    return hit


async def raw_fetch(
    session: AsyncSession | AsyncConnection | PooledReader,
    key: Any,
    build: Any,
    values: dict[str, Any],
    *,
    transactional: bool = True,
) -> list[dict[str, Any]]:
    """Rows of the statement `build` (or `build()`), compiled once under `key`, with `values`
    for its named bind parameters; JSON columns decoded.

    `transactional`: the statement belongs to the session's transaction, which is begun first
    when it has not been yet; otherwise, before that transaction begins, it runs on its own
    (autocommit)."""
    conn = await connection_of(session)
    sql, names, consts, processors = _compiled(key, build, conn)
    args = []
    for n in names:
        v = values[n] if n in values else consts[n]
        proc = processors.get(n)
        args.append(v if proc is None or v is None else proc(v))
    return await _run_raw(conn, sql, args, transactional=transactional)


async def pooled_connection(conn: AsyncConnection | PooledReader) -> Any:
    """The pooled DBAPI connection under `conn` (`get_raw_connection()`, which hops into a
    greenlet for it: a tenth of a hot statement, so taken directly from a live Connection;
    closed or invalidated, the greenlet path revalidates or raises as SQLAlchemy does)."""
    if isinstance(conn, PooledReader):
        return conn.fairy
    sync = conn.sync_connection
    raw: Any = sync._dbapi_connection if sync is not None else None
    if raw is None:
        raw = await conn.get_raw_connection()
    return raw


async def _run_raw(
    conn: AsyncConnection | PooledReader, sql: str, args: list[Any], *, transactional: bool
) -> list[dict[str, Any]]:
    raw = await pooled_connection(conn)
    pooled = isinstance(conn, PooledReader)
    driver: Any = raw.driver_connection
    if transactional and not pooled and not driver.is_in_transaction():
        adapter: Any = raw.dbapi_connection
        if not adapter.autocommit:
            # The BEGIN SQLAlchemy's adapter would send before its next statement.
            await adapter._start_transaction()
    try:
        rows = await driver.fetch(sql, *args)
    except Exception as err:
        if isinstance(conn, PooledReader):
            await conn.connection()  # SQLAlchemy's error handling needs its Connection
        _raise_as_sqlalchemy(conn, raw.dbapi_connection, err, sql, args)
    if (
        isinstance(conn, PooledReader)
        and conn.sync_connection is None
        and conn.engine.sync_engine.dispatch.after_cursor_execute
    ):
        await conn.connection()  # listeners are handed a Connection (none in production)
    sync = conn.sync_connection
    # The flags SQLAlchemy checks before dispatching any connection event (cheaper than asking
    # the dispatcher, which joins the connection's listeners with the engine's each time).
    if (
        sync is not None
        and (sync._has_events or sync.engine._has_events)
        and sync.dispatch.after_cursor_execute
    ):
        cursor = SimpleNamespace(
            _rows=rows,
            description=[(k,) for k in rows[0].keys()] if rows else None,  # noqa: SIM118 (a Record)
        )
        sync.dispatch.after_cursor_execute(sync, cursor, sql, args, None, False)
    if not rows:
        return []
    keys = tuple(rows[0].keys())
    json_keys = [k for k in keys if k in JSON_COLUMNS]
    # zip over the record's values: a third cheaper than dict(record)'s lookup per name.
    out = [dict(zip(keys, r, strict=True)) for r in rows]
    for k in json_keys:
        for row in out:
            v = row[k]
            if isinstance(v, str):
                row[k] = orjson.loads(v)
    return out


def _raise_as_sqlalchemy(
    conn: AsyncConnection | PooledReader, adapter: Any, err: Exception, sql: str, args: list[Any]
) -> NoReturn:
    """Raise a driver error as SQLAlchemy would have: the adapter's DBAPI error wrapped in
    `sqlalchemy.exc.DBAPIError` (so deadlocks are retried, a lost connection is invalidated
    and answered 503, like every other statement's)."""
    try:
        adapter._handle_exception(err)  # raises the translated DBAPI error
    except Exception as dbapi_error:
        sync = conn.sync_connection
        if sync is None:
            raise
        sync._handle_dbapi_exception(dbapi_error, sql, args, None, None)
    raise err


# Dynamic statements (the list's filters): compiled once per SQLAlchemy cache key.
_BY_CACHE_KEY: dict[Any, Any] = {}
_BY_CACHE_KEY_MAX = 2000


async def fetch_statement(
    session: AsyncSession | AsyncConnection | PooledReader, stmt: Any
) -> list[dict[str, Any]]:
    """Rows of a Core statement built per request, run on the asyncpg connection; compiled once
    per shape (SQLAlchemy's cache key), its values taken from this statement's parameters."""
    conn = await connection_of(session)
    cache_key = stmt._generate_cache_key()
    compiled = None if cache_key is None else _BY_CACHE_KEY.get(cache_key.key)
    if compiled is None:
        dialect = conn.dialect
        compiled = dialect.statement_compiler(dialect, stmt, cache_key=cache_key)
        if "POSTCOMPILE" in compiled.string or cache_key is None:  # expanding IN: not here
            result = await conn.execute(stmt)
            return [dict(r) for r in result.mappings()]
        if len(_BY_CACHE_KEY) >= _BY_CACHE_KEY_MAX:
            _BY_CACHE_KEY.clear()
        _BY_CACHE_KEY[cache_key.key] = compiled
    params = compiled.construct_params(extracted_parameters=cache_key.bindparams)
    processors: Any = compiled._bind_processors
    args = []
    for n in compiled.positiontup or ():
        v = params[n]
        proc = processors.get(n)
        args.append(v if proc is None or v is None else proc(v))
    return await _run_raw(conn, compiled.string, args, transactional=True)
