"""Application factory: routers, middleware, problem handlers and the database lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError

from app.audit.router import router as audit_router
from app.audit.sealer import seal_forever
from app.auth.router import router as auth_router
from app.core.config import Settings, get_settings
from app.core.db import build_engine, build_sessionmaker, resolve_database_url
from app.core.errors import document_problems, install_error_handlers
from app.core.hotroutes import (
    HotRouteMiddleware,
    compile_hot_deliveries,
    compile_hot_reads,
    compile_hot_writes,
)
from app.core.logging import configure_logging
from app.core.middleware import RequestContextMiddleware
from app.core.ratelimit import RateLimitMiddleware
from app.core.resilience import ResilienceMiddleware
from app.core.responses import FastJSONResponse
from app.customers import normalize
from app.customers.router import HOT_READS
from app.customers.router import HOT_WRITES as CUSTOMER_HOT_WRITES
from app.customers.router import router as customers_router
from app.exports.router import router as exports_router
from app.fields.router import router as fields_router
from app.identity.router import router as identity_router
from app.imports import worker as import_worker
from app.imports.router import router as imports_router
from app.ingest.router import HOT_DELIVERIES
from app.ingest.router import router as ingest_router
from app.interactions.router import HOT_WRITES as INTERACTION_HOT_WRITES
from app.interactions.router import customer_router as customer_timeline_router
from app.interactions.router import router as interactions_router
from app.meta.router import router as meta_router
from app.ops.router import router as ops_router
from app.pool.router import router as pool_router
from app.privacy.router import router as privacy_router
from app.reporting.router import router as reporting_router
from app.reports.router import router as reports_router
from app.saved_segments.router import router as saved_segments_router
from app.segments.router import customer_router as customer_segments_router
from app.segments.router import router as segments_router
from app.segments.scheduler import sweep_forever
from app.tags.router import categories_router as tag_categories_router
from app.tags.router import customer_tags_router
from app.tags.router import router as tags_router
from app.tasks.router import reminders_router, tasks_router

API_PREFIX = "/api/v1"
log = logging.getLogger(__name__)


# Every feature router, mounted under API_PREFIX; ops routes are mounted at the root.
FEATURE_ROUTERS: list[APIRouter] = [
    # The two busiest write paths first: FastAPI tries the routes in order, and an interaction
    # used to be tried against ~39 routes before its own. Their paths (/interactions...,
    # /webhooks/..., /webhook-sources...) share no prefix with the routers below.
    interactions_router,
    ingest_router,
    # Static /customers/... paths first, or /customers/{code} would capture them.
    identity_router,
    customers_router,
    privacy_router,
    customer_timeline_router,
    customer_segments_router,
    pool_router,
    # Behind the customers' routes (read far more often); no other router shares their first
    # path segment (/auth, /users, /service-accounts, /audit), so the order changes no match.
    auth_router,
    audit_router,
    tasks_router,
    reminders_router,
    # Before any router with /segments/{id}: /segments/rules etc. must match first.
    segments_router,
    fields_router,
    meta_router,
    tag_categories_router,
    tags_router,
    customer_tags_router,
    saved_segments_router,
    imports_router,
    exports_router,
    reports_router,
    reporting_router,
]


# Young-generation threshold for the cyclic garbage collector once the app has started: each
# request allocates a few thousand objects, so CPython's default (700) runs a collection several
# times per request; cycles made by requests are still collected within a few requests.
GC_THRESHOLD = (20_000, 20, 50)


def get_request_scope(
    path: str, headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    """The ASGI scope of a GET of `path` with no query string, for calling the app in process
    (the warm-up here, `bench.inproc`)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers or [],
        "client": None,
        "server": None,
    }


async def warm_up(app: FastAPI) -> None:
    """Build before serving what the first requests would otherwise build and wait for: the
    pinyin reading tables (the first customer written) and FastAPI's per-route contexts, made
    lazily by the first request that walks past each included router (an unmatched path walks
    past all of them; it gets its 404 here, with no middleware involved)."""
    await asyncio.to_thread(normalize.warm)
    scope = get_request_scope("/__warm_up__")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: Any) -> None:
        return None

    await app.router(scope, receive, send)


def settle_heap() -> None:
    """Move everything alive after startup (routes, schemas, compiled SQL, the ORM registry:
    some 360,000 objects) out of the collector's sight, and collect young objects less often.
    Otherwise each full collection walks the whole startup heap, a pause of 0.1–0.3 s that lands
    on whichever requests are in flight (the p99)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def iter_routes() -> Iterator[tuple[str, APIRoute]]:
    """Every API route with its full path (for the permission and route-matrix tests).

    The path is the documented one: `/segments/{id:int}` is listed as `/segments/{id}`.
    """
    for route in ops_router.routes:
        if isinstance(route, APIRoute):
            yield route.path_format, route
    for router in FEATURE_ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute):
                yield API_PREFIX + route.path_format, route


def create_app(settings: Settings | None = None, database_url: str | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The embedded start blocks (initdb, pg_ctl): keep it off the event loop.
        url = database_url or await asyncio.to_thread(resolve_database_url, settings)
        assert url
        engine = build_engine(url, settings)
        app.state.engine = engine
        app.state.sessionmaker = build_sessionmaker(engine)
        # Imports left unfinished by a stopped or dead process resume here (or fail cleanly).
        try:
            await import_worker.recover(engine)
        except (OSError, DBAPIError):
            # The database is down: start anyway; the next start (any instance) resumes them.
            log.warning("unfinished imports not resumed: database unavailable")
        # Chains the audit rows committed since its last turn (writers take no chain lock).
        sealer = asyncio.create_task(seal_forever(engine))
        sweeper = None
        if settings.sweep_interval_seconds > 0:
            sweeper = asyncio.create_task(
                sweep_forever(app.state.sessionmaker, settings.sweep_interval_seconds)
            )
        await warm_up(app)
        settle_heap()
        try:
            yield
        finally:
            sealer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sealer
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await import_worker.shutdown()
            await engine.dispose()

    app = FastAPI(
        title="Customer information service",
        version="1.0.0",
        description=(
            "Customers, interactions, tags and segments in one place. Errors are RFC 9457 "
            "problem+json; lists use keyset pagination (`limit`, `cursor`, `next_cursor`)."
        ),
        lifespan=lifespan,
        default_response_class=FastJSONResponse,
        # FastAPI's own OpenTelemetry spans and metrics are off: their attributes carry the raw
        # path and query string (customer codes, phone numbers searched for), and even unused
        # they cost every request a look at the global providers (5 µs of a ~300 µs get).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    document_problems(ops_router.routes)
    for router in FEATURE_ROUTERS:
        document_problems(router.routes)
    app.include_router(ops_router)
    for router in FEATURE_ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["ETag", "X-Request-ID", "Location"],
        )
    if settings.hot_reads or settings.hot_writes:
        # Innermost, inside the timeout, retries, rate limit and access log like any route.
        routes = list(iter_routes())
        app.add_middleware(
            HotRouteMiddleware,
            reads=compile_hot_reads(routes, HOT_READS) if settings.hot_reads else [],
            writes=(
                compile_hot_writes(routes, [*CUSTOMER_HOT_WRITES, *INTERACTION_HOT_WRITES])
                if settings.hot_writes
                else []
            ),
            deliveries=(
                compile_hot_deliveries(routes, HOT_DELIVERIES) if settings.hot_writes else []
            ),
        )
    app.add_middleware(
        ResilienceMiddleware,
        timeout=settings.request_timeout_seconds,
        attempts=settings.db_retry_attempts,
        long_requests={
            ("PUT", f"{API_PREFIX}/segments/rules"): settings.sweep_request_timeout_seconds,
            ("POST", f"{API_PREFIX}/segments/recompute"): settings.sweep_request_timeout_seconds,
        },
    )
    if settings.rate_limit_enabled:
        app.add_middleware(
            RateLimitMiddleware,
            per_principal=settings.rate_limit_per_principal,
            principal_burst=settings.rate_limit_principal_burst,
            per_ip=settings.rate_limit_per_ip,
            ip_burst=settings.rate_limit_ip_burst,
        )
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    return app


def app_factory() -> FastAPI:
    """Entry point for uvicorn --factory."""
    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
