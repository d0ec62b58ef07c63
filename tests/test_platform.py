"""Platform: permissions on every route, the role table, OpenAPI drift, problems, operations."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import ROLE_SCOPES, SCOPES, Role
from app.core.config import Settings, get_settings
from app.main import GC_THRESHOLD, create_app, iter_routes
from tests.factories import make_user

ROOT = Path(__file__).resolve().parent.parent
_APP = create_app(database_url="postgresql+asyncpg://unused/unused")


def _required_scopes(route: APIRoute) -> set[str]:
    found: set[str] = set()

    def walk(dependant: Any) -> None:
        scope = getattr(dependant.call, "required_scope", None)
        if scope:
            found.add(scope)
        for sub in dependant.dependencies:
            walk(sub)

    walk(route.dependant)
    return found


def _api_routes(app: FastAPI) -> list[APIRoute]:
    return [route for _, route in iter_routes()]


def _full_paths() -> list[tuple[str, APIRoute]]:
    return list(iter_routes())


def test_route_listing_covers_the_served_document():
    served = {
        (method.upper(), path) for path, ops in _APP.openapi()["paths"].items() for method in ops
    }
    listed = {(m, p) for p, r in iter_routes() for m in r.methods if r.include_in_schema}
    assert served == listed


def test_every_route_declares_exactly_one_permission():
    missing = [
        f"{sorted(r.methods)} {r.path}" for r in _api_routes(_APP) if not _required_scopes(r)
    ]
    assert missing == []
    several = [r.path for r in _api_routes(_APP) if len(_required_scopes(r)) > 1]
    assert several == []


def test_every_route_has_a_summary_docstring():
    assert [r.path for r in _api_routes(_APP) if not (r.endpoint.__doc__ or "").strip()] == []


def test_role_table_uses_only_known_scopes():
    for role, scopes in ROLE_SCOPES.items():
        assert scopes <= set(SCOPES), role
    assert ROLE_SCOPES[Role.admin] == frozenset(SCOPES)
    assert set(ROLE_SCOPES) == set(Role)


def _matrix() -> list[Any]:
    cases = []
    for full_path, route in _full_paths():
        (scope,) = _required_scopes(route)
        if scope in {"public", "authenticated"}:
            continue
        for method in sorted(route.methods):
            for role in Role:
                cases.append(
                    pytest.param(
                        method,
                        full_path,
                        role,
                        scope in ROLE_SCOPES[role],
                        id=f"{method} {full_path} {role.value}",
                    )
                )
    return cases


@pytest.mark.parametrize(("method", "path", "role", "allowed"), _matrix())
async def test_role_matrix(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    method: str,
    path: str,
    role: Role,
    allowed: bool,
):
    """Generated from ROLE_SCOPES: a role without the route's scope gets 403, else not 401/403."""
    user = await make_user(engine, role=role)
    url = path.replace("{", "").replace("}", "")
    for name in ("user_id", "account_id", "code", "id"):
        url = url.replace(name, "999999" if name != "code" else "C20990101001")
    r = await client.request(method, url, headers=user.headers, json={})
    if allowed:
        assert r.status_code not in (401, 403), r.text
    else:
        assert r.status_code == 403, r.text
        assert r.headers["content-type"] == "application/problem+json"


def test_openapi_document_matches_the_app():
    committed = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    served = json.loads(json.dumps(_APP.openapi()))
    assert committed == served, "run `crm openapi` to regenerate openapi/openapi.json"


async def test_health_ready_metrics(client: httpx.AsyncClient):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    m = await client.get("/metrics")
    assert m.status_code == 200 and "crm_http_requests_total" in m.text


def _requests_total(metrics: str, route: str) -> float:
    line = f'crm_http_requests_total{{method="GET",route="{route}",status="200"}} '
    found = [row for row in metrics.splitlines() if row.startswith(line)]
    return float(found[0].removeprefix(line)) if found else 0.0


async def test_each_request_is_counted_under_its_route(client: httpx.AsyncClient):
    before = _requests_total((await client.get("/metrics")).text, "/healthz")
    for _ in range(3):
        assert (await client.get("/healthz")).status_code == 200
    after = _requests_total((await client.get("/metrics")).text, "/healthz")
    assert after - before == 3


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient):
    mine = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert mine.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"
    assert len(generated.headers["x-request-id"]) == 32
    again = await client.get("/healthz")
    assert again.headers["x-request-id"] != generated.headers["x-request-id"]


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient):
    r = await client.get("/api/v1/nowhere")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 404
    m = await client.put("/healthz")
    assert m.status_code == 405 and m.json()["type"].endswith("method-not-allowed")


async def test_oversized_body_is_413(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    big = {"name": "x" * (3 * 1024 * 1024)}
    r = await client.post("/api/v1/service-accounts", json=big, headers=admin.headers)
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"


async def test_malformed_json_is_422_problem(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    r = await client.post(
        "/api/v1/service-accounts",
        content=b"{not json",
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


def _scope_matrix() -> list[Any]:
    cases = []
    for full_path, route in _full_paths():
        (scope,) = _required_scopes(route)
        if scope in {"public", "authenticated"}:
            continue
        for method in sorted(route.methods):
            cases.append(pytest.param(method, full_path, scope, id=f"{method} {full_path}"))
    return cases


@pytest.mark.parametrize(("method", "path", "scope"), _scope_matrix())
async def test_service_account_scope_matrix(
    client: httpx.AsyncClient, method: str, path: str, scope: str
):
    """A service account holding only the route's scope gets past the check; without it, 403."""
    from app.auth import tokens
    from app.core.config import get_settings

    def token(scopes: list[str]) -> dict[str, str]:
        raw = tokens.issue_access(get_settings(), subject="service:1", role=None, scopes=scopes)
        return {"Authorization": f"Bearer {raw}"}

    url = path.replace("{", "").replace("}", "")
    for name in ("user_id", "account_id", "code", "id"):
        url = url.replace(name, "999999" if name != "code" else "C20990101001")
    other = "meta:read" if scope != "meta:read" else "tags:read"
    denied = await client.request(method, url, headers=token([other]), json={})
    assert denied.status_code == 403, denied.text
    allowed = await client.request(method, url, headers=token([scope]), json={})
    assert allowed.status_code != 401, allowed.text
    # A 403 may still come from a rule past the scope check (a service account cannot own a
    # customer, so it cannot claim one), never from the scope check itself.
    assert f"'{scope}'" not in allowed.text, allowed.text


async def test_a_started_app_keeps_its_startup_heap_out_of_the_collector(database_url: str):
    """Full collections must not walk the startup heap (a pause on every in-flight request),
    and cycles made while serving are still collected."""
    settings = Settings(**{**get_settings().model_dump(), "sweep_interval_seconds": 0})
    app = create_app(settings, database_url=database_url)
    before = gc.get_threshold()
    gc.unfreeze()
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 100_000  # routes, schemas, ORM registry, ...
            assert gc.get_threshold() == GC_THRESHOLD

            class Node:
                me: Any = None

            node = Node()
            node.me = node  # a reference cycle: only the collector frees it
            gone = weakref.ref(node)
            del node
            gc.collect(0)
            assert gone() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def test_a_started_app_has_built_what_first_requests_would_wait_for(database_url: str):
    """The pinyin reading tables (0.3–0.7 s to build) and FastAPI's per-route contexts exist
    before the first request, and building them left no request in the metrics."""
    from fastapi.routing import _IncludedRouter

    from app.core.middleware import REQUESTS
    from app.customers import normalize

    def unmatched() -> float:
        return sum(
            sample.value
            for metric in REQUESTS.collect()
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.labels.get("route") == "unmatched"
        )

    settings = Settings(**{**get_settings().model_dump(), "sweep_interval_seconds": 0})
    app = create_app(settings, database_url=database_url)
    normalize._CHAR_PINYIN._risky = None  # as in a fresh process
    included = [r for r in app.router.routes if isinstance(r, _IncludedRouter)]
    assert included and all(r._effective_candidates_version is None for r in included)
    counted = unmatched()
    async with app.router.lifespan_context(app):
        assert normalize._CHAR_PINYIN._risky is not None
        assert all(r._effective_candidates_version is not None for r in included)
        assert unmatched() == counted
    assert normalize.pinyin_forms("重庆银行") == ("chongqingyinhang", "cqyh")
