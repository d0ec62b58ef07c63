"""Hot reads: answered beside FastAPI exactly as the FastAPI route answers, and refused at
startup when they no longer fit their route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import tokens
from app.auth.dependencies import Public, require
from app.auth.permissions import Role
from app.auth.principal import Principal
from app.core import hotroutes
from app.core.config import get_settings
from app.core.db import ReadConnectionDep, SessionDep, build_sessionmaker
from app.core.hotroutes import HotRead, HotRouteError, compile_hot_reads
from app.main import create_app
from tests.factories import make_customer, make_user


@pytest.fixture
async def plain_client(engine: AsyncEngine, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The same app with the hot reads off: every request goes through FastAPI's route."""
    app = create_app(get_settings().model_copy(update={"hot_reads": False}), database_url)
    app.state.engine = engine
    app.state.sessionmaker = build_sessionmaker(engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as c:
        yield c


# Differ per app or per request by design: the request id, and each app's own rate buckets.
VOLATILE = {"x-request-id", "ratelimit-remaining", "ratelimit-reset", "ratelimit-limit"}


def _answer(r: httpx.Response) -> tuple[int, dict[str, str], Any]:
    headers = {k: v for k, v in r.headers.items() if k not in VOLATILE}
    body = r.json()
    if isinstance(body, dict):
        body.pop("request_id", None)
    return r.status_code, headers, body


async def test_hot_get_answers_as_the_fastapi_route_does(
    client: httpx.AsyncClient,
    plain_client: httpx.AsyncClient,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
):
    admin = await make_user(engine, role=Role.admin)
    manager = await make_user(engine, role=Role.manager)
    rep = await make_user(engine, role=Role.sales)
    other_rep = await make_user(engine, role=Role.sales)
    mine = await make_customer(
        client, rep, name="杭州西湖茶业有限公司", phone="13800138000", email="a@b.cn"
    )
    theirs = await make_customer(client, other_rep, name="苏州园林设计有限公司")
    survivor = await make_customer(client, manager, name="上海浦江物流有限公司")
    merged = await make_customer(client, manager, name="上海浦江物流公司")
    r = await client.post(
        "/api/v1/customers/merge",
        json={"survivor": survivor["code"], "merged": [merged["code"]]},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    no_scope = tokens.issue_access(
        get_settings(), subject=f"user:{manager.id}", role=Role.manager, scopes=["tags:read"]
    )
    base = "/api/v1/customers/"
    requests: list[tuple[str, dict[str, str]]] = [
        (base + mine["code"], rep.headers),  # own customer, PII shown
        (base + mine["code"], manager.headers),
        (base + mine["code"] + "?unused=1", rep.headers),
        (base + theirs["code"], rep.headers),  # another rep's: 404, never 403
        (base + theirs["code"], {**rep.headers, "Accept-Language": "zh-CN"}),
        (base + "C20991231999", manager.headers),  # no such code
        (base + merged["code"] + "?x=1", manager.headers),  # merged: 308 to the survivor
        (base + mine["code"], {}),  # no token
        (base + mine["code"], {"Authorization": "Bearer not-a-token"}),
        (base + mine["code"], {"Authorization": "Basic " + rep.token}),
        (base + mine["code"], {"Authorization": f"bearer {rep.token}"}),  # scheme: any case
        (base + mine["code"], {"Authorization": f"Bearer {no_scope}"}),  # 403
        (base + "duplicates", manager.headers),  # an earlier static route keeps its path
    ]
    served: list[str] = []
    serve = hotroutes.HotReadMiddleware._serve

    async def counting(self: Any, read: Any, match: Any, *args: Any) -> None:
        served.append(match.string)
        await serve(self, read, match, *args)

    monkeypatch.setattr(hotroutes.HotReadMiddleware, "_serve", counting)
    statuses = []
    for path, headers in requests:
        hot = await client.get(path, headers=headers)
        plain = await plain_client.get(path, headers=headers)
        assert _answer(hot) == _answer(plain), path
        statuses.append(hot.status_code)
    assert statuses == [200, 200, 200, 404, 404, 404, 308, 401, 401, 401, 200, 403, 200]
    # Every customer path went the hot way (the query string is not part of the path).
    assert len(served) == len(requests) - 1 and "duplicates" not in " ".join(served)


async def test_hot_get_is_logged_under_its_route_template(
    client: httpx.AsyncClient, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
):
    manager = await make_user(engine, role=Role.manager)
    created = await make_customer(client, manager, name="成都锦江电子有限公司")
    with caplog.at_level("INFO", logger="crm.access"):
        r = await client.get(f"/api/v1/customers/{created['code']}", headers=manager.headers)
    assert r.status_code == 200
    routes = [getattr(rec, "route", None) for rec in caplog.records if rec.name == "crm.access"]
    assert routes == ["/customers/{code}"]  # the template, never the code itself


# ---- refused at startup -----------------------------------------------------------------


async def _serve(conn: Any, principal: Principal, **params: str) -> Response:
    return Response()


def _routes(router: APIRouter) -> list[tuple[str, APIRoute]]:
    return [("/api" + r.path_format, r) for r in router.routes if isinstance(r, APIRoute)]


def test_a_fitting_route_compiles_and_earlier_static_paths_stay_theirs():
    router = APIRouter()

    @router.get("/things/latest")
    async def latest(principal: Annotated[Principal, require("customers:read")]) -> None: ...

    @router.get("/things/{key}")
    async def one(
        key: str, conn: ReadConnectionDep, principal: Annotated[Principal, require("tags:read")]
    ) -> None: ...

    [compiled] = compile_hot_reads(_routes(router), [HotRead(one, _serve)])
    assert compiled.scope == "tags:read"
    assert compiled.shadowed == {"/api/things/latest"}
    assert compiled.regex.match("/api/things/T1") and not compiled.regex.match("/api/things/a/b")


def _unfit_routes() -> list[tuple[str, APIRouter, Any]]:
    cases = []
    scope = Annotated[Principal, require("customers:read")]

    def case(name: str) -> APIRouter:
        router = APIRouter()
        cases.append((name, router))
        return router

    r = case("query parameter")

    @r.get("/x/{key}")
    async def q(key: str, conn: ReadConnectionDep, p: scope, page: int = Query(1)) -> None: ...

    r = case("header parameter")

    @r.get("/x/{key}")
    async def h(key: str, conn: ReadConnectionDep, p: scope, x_a: str = Header("")) -> None: ...

    r = case("typed path parameter")

    @r.get("/x/{key}")
    async def t(key: int, conn: ReadConnectionDep, p: scope) -> None: ...

    r = case("a session, not a read connection")

    @r.get("/x/{key}")
    async def s(key: str, conn: SessionDep, p: scope) -> None: ...

    r = case("public")

    @r.get("/x/{key}", dependencies=[Public])
    async def pub(key: str, conn: ReadConnectionDep) -> None: ...

    r = case("an earlier route with parameters")

    @r.get("/x/{other}")
    async def earlier(other: str, conn: ReadConnectionDep, p: scope) -> None: ...

    @r.get("/x/{key}")
    async def later(key: str, conn: ReadConnectionDep, p: scope) -> None: ...

    r = case("an extra dependency")

    def extra() -> int:
        return 1

    @r.get("/x/{key}")
    async def e(
        key: str, conn: ReadConnectionDep, p: scope, n: Annotated[int, Depends(extra)]
    ) -> None: ...

    return [(name, router, router.routes[-1].endpoint) for name, router in cases]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "router", "endpoint"), _unfit_routes(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_a_route_a_hot_read_cannot_serve_is_refused(name: str, router: APIRouter, endpoint: Any):
    with pytest.raises(HotRouteError):
        compile_hot_reads(_routes(router), [HotRead(endpoint, _serve)])
