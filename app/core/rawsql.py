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

from types import SimpleNamespace
from typing import Any, NoReturn

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

_RAW: dict[Any, tuple[str, tuple[str, ...], dict[str, Any], dict[str, Any]]] = {}
# List filters combine into many statement shapes: keep the cache bounded (cleared when full).
_RAW_MAX = 2_000
# JSONB columns decoded wherever a hot statement returns them (customers: contacts, custom, tags).
JSON_COLUMNS = frozenset({"contacts", "custom", "tags"})


# Where a session keeps the connection of its current transaction, for the next statement.
_CONNECTION = "rawsql.connection"


async def connection_of(session: AsyncSession | AsyncConnection) -> AsyncConnection:
    """The connection a statement runs on: the bare connection itself, or the one holding the
    session's transaction (begun here when there is none).

    `AsyncSession.connection()` hops into a greenlet on every call; a write request runs four
    to ten statements in one transaction, so the connection is remembered per transaction and
    asked for again only when that transaction has ended (commit, rollback) or failed."""
    if isinstance(session, AsyncConnection):
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
    key: Any, build: Any, conn: AsyncConnection
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
    session: AsyncSession | AsyncConnection,
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


async def pooled_connection(conn: AsyncConnection) -> Any:
    """The pooled DBAPI connection under `conn` (`get_raw_connection()`, which hops into a
    greenlet for it: a tenth of a hot statement, so taken directly from a live Connection;
    closed or invalidated, the greenlet path revalidates or raises as SQLAlchemy does)."""
    sync = conn.sync_connection
    raw: Any = sync._dbapi_connection if sync is not None else None
    if raw is None:
        raw = await conn.get_raw_connection()
    return raw


async def _run_raw(
    conn: AsyncConnection, sql: str, args: list[Any], *, transactional: bool
) -> list[dict[str, Any]]:
    raw = await pooled_connection(conn)
    sync = conn.sync_connection
    driver: Any = raw.driver_connection
    if transactional and not driver.is_in_transaction():
        adapter: Any = raw.dbapi_connection
        if not adapter.autocommit:
            # The BEGIN SQLAlchemy's adapter would send before its next statement.
            await adapter._start_transaction()
    try:
        rows = await driver.fetch(sql, *args)
    except Exception as err:
        _raise_as_sqlalchemy(conn, raw.dbapi_connection, err, sql, args)
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
    conn: AsyncConnection, adapter: Any, err: Exception, sql: str, args: list[Any]
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
    session: AsyncSession | AsyncConnection, stmt: Any
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
