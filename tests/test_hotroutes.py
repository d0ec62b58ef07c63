"""Hot routes: answered beside FastAPI exactly as the FastAPI route answers, and refused at
startup when they no longer fit their route."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import tokens
from app.auth.dependencies import Public, require
from app.auth.permissions import Role
from app.auth.principal import Principal
from app.core import hotroutes
from app.core.config import get_settings
from app.core.db import ReadConnectionDep, SessionDep, WriteConnectionDep, build_sessionmaker
from app.core.hotroutes import (
    HotDelivery,
    HotRead,
    HotRouteError,
    HotWrite,
    compile_hot_deliveries,
    compile_hot_reads,
    compile_hot_writes,
)
from app.ingest.signature import sign
from app.main import create_app, get_request_scope
from tests.factories import make_customer, make_user


@pytest.fixture
async def plain_client(engine: AsyncEngine, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The same app with the hot routes off: every request goes through FastAPI's route."""
    settings = get_settings().model_copy(update={"hot_reads": False, "hot_writes": False})
    app = create_app(settings, database_url)
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
    serve = hotroutes.HotRouteMiddleware._serve

    async def counting(self: Any, read: Any, match: Any, *args: Any) -> None:
        served.append(match.string)
        await serve(self, read, match, *args)

    monkeypatch.setattr(hotroutes.HotRouteMiddleware, "_serve", counting)
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


class _Cases:
    """Routers named by what makes their last route unfit for a hot route."""

    def __init__(self) -> None:
        self.routers: list[tuple[str, APIRouter]] = []

    def case(self, name: str) -> APIRouter:
        router = APIRouter()
        self.routers.append((name, router))
        return router

    def params(self) -> list[tuple[str, APIRouter, Any]]:
        return [(name, r, r.routes[-1].endpoint) for name, r in self.routers]  # type: ignore[attr-defined]


def _unfit_routes() -> list[tuple[str, APIRouter, Any]]:
    cases = _Cases()
    case = cases.case
    scope = Annotated[Principal, require("customers:read")]

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

    return cases.params()


@pytest.mark.parametrize(
    ("name", "router", "endpoint"), _unfit_routes(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_a_route_a_hot_read_cannot_serve_is_refused(name: str, router: APIRouter, endpoint: Any):
    with pytest.raises(HotRouteError):
        compile_hot_reads(_routes(router), [HotRead(endpoint, _serve)])


# ---- hot writes ---------------------------------------------------------------------------

INTERACTIONS = "/api/v1/interactions"
CUSTOMERS = "/api/v1/customers"


def _new_row(
    r: httpx.Response, location: re.Pattern[str], keys: tuple[str, ...]
) -> tuple[int, dict[str, str], Any]:
    """The answer to a create without what differs between two writes of the same request by
    design: the new row's key in its Location and body (`keys`), its times."""
    status, headers, body = _answer(r)
    if "location" in headers:
        headers["location"] = location.sub("/N", headers["location"])
    if status == 201:
        for key in (*keys, "created_at", "updated_at"):
            assert body.pop(key)
    return status, headers, body


def _written(r: httpx.Response) -> tuple[int, dict[str, str], Any]:
    status, headers, body = _new_row(r, re.compile(r"/\d+$"), ("id",))
    if status == 201 and body["next_action"]:
        assert body["next_action"].pop("task_id")
    return status, headers, body


def _created(r: httpx.Response) -> tuple[int, dict[str, str], Any]:
    return _new_row(r, re.compile(r"/C\d+$"), ("code",))


async def test_hot_post_answers_as_the_fastapi_route_does(
    client: httpx.AsyncClient,
    plain_client: httpx.AsyncClient,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
):
    manager = await make_user(engine, role=Role.manager)
    rep = await make_user(engine, role=Role.sales)
    other_rep = await make_user(engine, role=Role.sales)
    mine = await make_customer(client, rep, name="杭州西湖茶业有限公司")
    theirs = await make_customer(client, other_rep, name="苏州园林设计有限公司")
    pooled = await make_customer(client, manager, name="南京秦淮文化传播有限公司")
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE customers SET owner_id = NULL WHERE code = :c"), {"c": pooled["code"]}
        )
    no_scope = tokens.issue_access(
        get_settings(), subject=f"user:{rep.id}", role=Role.sales, scopes=["customers:read"]
    )
    at = "2026-11-20T10:00:00+08:00"
    touch = {
        "customer_code": mine["code"],
        "channel": "phone",
        "kind": "follow_up",
        "direction": "outbound",
        "summary": "电话回访",
        "occurred_at": at,
    }
    later = {"title": "再次回访", "due_at": "2026-12-20T10:00:00+08:00"}
    sale = {"kind": "purchase", "amount": "12000.50", "products": ["专业版"]}
    as_json = {"Content-Type": "application/json"}
    rj, mj = rep.headers | as_json, manager.headers | as_json
    # (body as sent, headers): each sent once to each app.
    requests: list[tuple[str, dict[str, str]]] = [
        (_json(touch), rj),
        (_json(touch | {"next_action": later}), rj),  # a follow-up task
        (_json(touch | sale), mj),
        (_json(touch), rep.headers | {"Content-Type": "application/json; charset=utf-8"}),
        (_json(touch), rep.headers | {"Content-Type": "text/plain"}),  # FastAPI's way
        (_json(touch), rep.headers),  # no content type: not JSON to FastAPI
        (_json(touch), rj | {"Idempotency-Key": "k" * 201}),  # too long: 422
        ('{"customer_code": ', rj),  # not JSON
        ("[1, 2]", rj),  # not an object
        (_json(touch)[:-1] + ', "amount": NaN}', rj),  # json.loads takes NaN, orjson not
        (_json({k: v for k, v in touch.items() if k != "channel"}), rj),
        (_json(touch | {"colour": "red"}), rj),  # unknown field
        (_json(touch), as_json),  # no token
        (_json(touch), as_json | {"Authorization": f"Bearer {no_scope}"}),  # 403
        (_json(touch | {"customer_code": theirs["code"]}), rj),  # another rep's: 404
        (_json(touch | {"customer_code": theirs["code"]}), rj | {"Accept-Language": "zh-CN"}),
        (_json(touch | {"customer_code": "C20991231999"}), rj),
        (_json(touch | {"customer_code": pooled["code"]}), rj),  # a pool customer: 403
        (_json(touch | {"staff_id": 999999}), mj),  # refused by the service: 422
    ]
    taken = _taken(monkeypatch, "_write_arguments")
    statuses = []
    for body, headers in requests:
        hot = await client.post(INTERACTIONS, content=body.encode(), headers=headers)
        plain = await plain_client.post(INTERACTIONS, content=body.encode(), headers=headers)
        assert _written(hot) == _written(plain), (body, hot.text)
        statuses.append(hot.status_code)
    assert statuses == [201] * 4 + [422] * 8 + [401, 403, 404, 404, 404, 403, 422]
    # The well-formed, authorised ones went the hot way; the rest were FastAPI's.
    assert taken == [True] * 4 + [False] * 10 + [True] * 5
    # Both ways wrote the same: two of each created interaction, an audit row each.
    async with engine.connect() as conn:
        kinds = (
            await conn.execute(text("SELECT kind, count(*) FROM interactions GROUP BY kind"))
        ).all()
        audited = await conn.scalar(
            text("SELECT count(*) FROM audit_log WHERE action = 'interaction.create'")
        )
        tasks = await conn.scalar(text("SELECT count(*) FROM tasks"))
    assert dict(kinds) == {"follow_up": 6, "purchase": 2}
    assert audited == 8 and tasks == 2


async def test_hot_customer_create_answers_as_the_fastapi_route_does(
    client: httpx.AsyncClient,
    plain_client: httpx.AsyncClient,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
):
    manager = await make_user(engine, role=Role.manager)
    rep = await make_user(engine, role=Role.sales)
    other_rep = await make_user(engine, role=Role.sales)
    no_scope = tokens.issue_access(
        get_settings(), subject=f"user:{rep.id}", role=Role.sales, scopes=["customers:read"]
    )
    company = {"name": "杭州西湖茶业有限公司", "kind": "enterprise"}
    full = company | {
        "phone": "13812345678",
        "email": "sales@xihu-tea.cn",
        "industry": "零售业",
        "region": {"province": "浙江省", "city": "杭州市"},
        "employee_band": "20-99人",
        "first_contact_at": "2026-11-20T10:00:00+08:00",
        "budget": "120000.50",
        "need_tags": ["价格", "交付"],
        "contacts": [{"name": "王经理", "phones": ["13912345678"], "title": "采购经理"}],
    }
    as_json = {"Content-Type": "application/json"}
    rj, mj = rep.headers | as_json, manager.headers | as_json
    requests: list[tuple[str, dict[str, str]]] = [
        (_json(company), rj),
        (_json(full), rj),
        (_json(company | {"owner_id": rep.id}), mj),  # a manager assigns it
        (_json(company), rj | {"Idempotency-Key": "create-1"}),
        (_json(company), rep.headers | {"Content-Type": "application/json; charset=utf-8"}),
        (_json(company), rep.headers | {"Content-Type": "text/plain"}),  # FastAPI's way
        (_json(company), rep.headers),  # no content type: not JSON to FastAPI
        (_json(company), rj | {"Idempotency-Key": "k" * 201}),  # too long: 422
        ('{"name": ', rj),  # not JSON
        ('["x"]', rj),  # not an object
        (_json({"kind": "company"}), rj),  # no name
        (_json(company | {"colour": "red"}), rj),  # unknown field
        (_json(company | {"phone": "12345"}), rj),  # not a phone
        (_json(company), as_json),  # no token
        (_json(company), as_json | {"Authorization": f"Bearer {no_scope}"}),  # 403
        (_json(company | {"owner_id": other_rep.id}), rj),  # a rep cannot assign: 403
        (_json(company | {"owner_id": 999999}), mj),  # no such user: 422 by the service
        (_json(company | {"source": "carrier-pigeon"}), rj),  # no such source: 422
        (_json(company | {"source": "carrier-pigeon"}), rj | {"Accept-Language": "zh-CN"}),
    ]
    taken = _taken(monkeypatch, "_write_arguments")
    statuses = []
    for body, headers in requests:
        if "Idempotency-Key" in headers and len(headers["Idempotency-Key"]) <= 200:
            # A key is per caller: each app gets its own, replayed once to check the replay.
            answers = []
            for c, key in ((client, "hot"), (plain_client, "plain")):
                keyed = headers | {"Idempotency-Key": f"{headers['Idempotency-Key']}-{key}"}
                first = await c.post(CUSTOMERS, content=body.encode(), headers=keyed)
                again = await c.post(CUSTOMERS, content=body.encode(), headers=keyed)
                assert again.json().get("code") == first.json().get("code"), (
                    first.text,
                    again.text,
                )
                answers.append(first)
            hot, plain = answers
        else:
            hot = await client.post(CUSTOMERS, content=body.encode(), headers=headers)
            plain = await plain_client.post(CUSTOMERS, content=body.encode(), headers=headers)
        assert _created(hot) == _created(plain), (body, hot.text)
        statuses.append(hot.status_code)
    assert statuses == [201] * 5 + [422] * 8 + [401, 403, 403] + [422] * 3
    # The well-formed, authorised ones went the hot way (the keyed one and its replay); the rest
    # were FastAPI's.
    assert taken == [True] * 6 + [False] * 10 + [True] * 4
    # Both ways wrote the same: two of each created customer (the replays none), an audit row
    # each.
    async with engine.connect() as conn:
        owners = (
            await conn.execute(text("SELECT owner_id, count(*) FROM customers GROUP BY owner_id"))
        ).all()
        audited = await conn.scalar(
            text("SELECT count(*) FROM audit_log WHERE action = 'customer.create'")
        )
    assert dict(owners) == {rep.id: 10}
    assert audited == 10


def _taken(monkeypatch: pytest.MonkeyPatch, name: str) -> list[bool]:
    """Whether each call of hotroutes' `name` let the hot route take the request (not None)."""
    taken: list[bool] = []
    check = getattr(hotroutes, name)

    def counting(*args: Any) -> Any:
        result = check(*args)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(hotroutes, name, counting)
    return taken


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


async def test_hot_post_reads_a_body_in_parts_and_hands_a_departed_client_to_fastapi(
    app: Any, engine: AsyncEngine, database_url: str, caplog: pytest.LogCaptureFixture
):
    rep = await make_user(engine, role=Role.sales)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as c:
        mine = await make_customer(c, rep, name="广州珠江贸易有限公司")
    body = _json(
        {
            "customer_code": mine["code"],
            "channel": "wechat",
            "kind": "inquiry",
            "direction": "inbound",
            "summary": "询价",
        }
    ).encode()
    headers = [
        (b"authorization", rep.headers["Authorization"].encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"host", b"test"),
    ]

    async def call(parts: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
        scope = get_request_scope(INTERACTIONS, headers) | {"method": "POST"}
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> MutableMapping[str, Any]:
            return parts.pop(0) if parts else {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent

    half = len(body) // 2
    with caplog.at_level("INFO", logger="crm.access"):
        sent = await call(
            [
                {"type": "http.request", "body": body[:half], "more_body": True},
                {"type": "http.request", "body": body[half:], "more_body": False},
            ]
        )
    assert sent[0]["status"] == 201
    assert json.loads(sent[1]["body"])["summary"] == "询价"
    routes = [getattr(rec, "route", None) for rec in caplog.records if rec.name == "crm.access"]
    assert routes == ["/interactions"]
    # The client leaves mid-body: FastAPI's own handling, nothing written.
    await call([{"type": "http.request", "body": body[:half], "more_body": True}])
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM interactions")) == 1


WEBHOOKS = "/api/v1/webhooks"


async def _webhook_source(
    client: httpx.AsyncClient, admin: Any, slug: str, mapping: dict[str, str]
) -> str:
    spec = {"slug": slug, "name": slug, "kind": "form", "channel": "website_form"}
    r = await client.post(
        "/api/v1/webhook-sources", json=spec | {"mapping": mapping}, headers=admin.headers
    )
    assert r.status_code == 201, r.text
    return str(r.json()["secret"])


def _delivered(r: httpx.Response) -> tuple[int, dict[str, str], Any]:
    status, headers, body = _answer(r)
    if status in (200, 202) and "inbox_id" in body:
        assert body.pop("inbox_id")
    return status, headers, body


async def test_hot_delivery_answers_as_the_fastapi_route_does(
    client: httpx.AsyncClient,
    plain_client: httpx.AsyncClient,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    admin = await make_user(engine, role=Role.admin)
    form = await _webhook_source(
        client,
        admin,
        "site-form",
        {"customer.name": "data.company", "customer.phone": "data.mobile"},
    )
    calls = await _webhook_source(
        client, admin, "call-center", {"customer.phone": "caller", "interaction.summary": "notes"}
    )
    known = {"data": {"company": "杭州西湖茶业有限公司", "mobile": "13812345678"}}
    ts = int(time.time())
    raw = json.dumps(known, ensure_ascii=False).encode()
    setup = await client.post(
        f"{WEBHOOKS}/site-form",
        content=raw,
        headers={
            "content-type": "application/json",
            "webhook-id": "setup",
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(form, "setup", ts, raw),
        },
    )
    assert setup.status_code == 200, setup.text
    call = _json({"caller": "+86-138-1234-5678", "notes": "来电询价"}).encode()

    def delivery(
        way: str,
        case: str,
        *,
        slug: str = "call-center",
        secret: str = calls,
        body: bytes = call,
        age: int = 0,
        **headers: str,
    ) -> tuple[str, bytes, dict[str, str]]:
        """A signed delivery whose webhook-id is the case's own for each way (`way`)."""
        wid = f"{case}-{way}"
        sent = {
            "content-type": "application/json",
            "webhook-id": wid,
            "webhook-timestamp": str(ts - age),
            "webhook-signature": sign(secret, wid, ts - age, body),
        }
        sent |= {k.replace("_", "-"): v for k, v in headers.items()}
        return f"{WEBHOOKS}/{slug}", body, {k: v for k, v in sent.items() if v}

    def cases(way: str) -> list[tuple[str, bytes, dict[str, str]]]:
        # A new visitor each way: each creates its own customer (its code aside, alike).
        mobile = "13900000001" if way == "hot" else "13900000002"
        visitor = _json({"data": {"company": "苏州园林设计有限公司", "mobile": mobile}}).encode()
        return [
            delivery(way, "call"),  # matches the customer: an interaction on it
            delivery(way, "call"),  # the same webhook-id again: a duplicate
            delivery(way, "visitor", slug="site-form", secret=form, body=visitor),
            delivery(way, "forged", secret=form),  # another source's secret: 401
            delivery(way, "stale", age=3600),  # 401
            delivery(way, "unsigned", webhook_signature=""),  # 401
            delivery(way, "zh", secret=form, accept_language="zh-CN"),  # 401, in Chinese
            delivery(way, "long", webhook_signature="v1," + "a" * 2000),  # over its limit: 422
            delivery(way, "nope", slug="no-such-source"),  # 404
            delivery(way, "notjson", body=b'{"caller": '),  # signed, not JSON: 422
        ]

    taken = _taken(monkeypatch, "_header_arguments")
    statuses = []
    with caplog.at_level("INFO", logger="crm.access"):
        for (path, body, headers), (plain_path, plain_body, plain_headers) in zip(
            cases("hot"), cases("plain"), strict=True
        ):
            hot = await client.post(path, content=body, headers=headers)
            plain = await plain_client.post(plain_path, content=plain_body, headers=plain_headers)
            hot_answer, plain_answer = _delivered(hot), _delivered(plain)
            if path.endswith("/site-form") and hot.status_code == 200:
                assert hot_answer[2].pop("customer_code") != plain_answer[2].pop("customer_code")
            assert hot_answer == plain_answer, (path, headers, hot.text)
            statuses.append(hot.status_code)
    assert statuses == [200, 200, 200, 401, 401, 401, 401, 422, 404, 422]
    assert taken == [True] * 7 + [False] + [True] * 2
    routes = {getattr(rec, "route", None) for rec in caplog.records if rec.name == "crm.access"}
    assert routes == {"/webhooks/{slug}"}
    # Both ways stored and processed the same: the setup's event, then two of each.
    async with engine.connect() as conn:
        inbox = (
            await conn.execute(text("SELECT status, count(*) FROM webhook_inbox GROUP BY status"))
        ).all()
        interactions = await conn.scalar(text("SELECT count(*) FROM interactions"))
        customers = await conn.scalar(text("SELECT count(*) FROM customers"))
    assert dict(inbox) == {"processed": 5}
    assert interactions == 5 and customers == 3


class _Thing(BaseModel):
    name: str


def test_a_fitting_post_route_compiles():
    router = APIRouter()

    @router.post("/things")
    async def add(
        thing: _Thing,
        conn: WriteConnectionDep,
        principal: Annotated[Principal, require("tags:write")],
        idempotency_key: Annotated[str | None, Header(max_length=20)] = None,
    ) -> None: ...

    [compiled] = compile_hot_writes(_routes(router), [HotWrite(add)])
    assert compiled.scope == "tags:write"
    assert compiled.body == ("thing", _Thing)
    assert (compiled.connection, compiled.principal) == ("conn", "principal")
    assert compiled.headers == (("idempotency_key", "idempotency-key", 20),)
    assert compiled.regex.match("/api/things") and not compiled.regex.match("/api/things/1")


def _unfit_writes() -> list[tuple[str, APIRouter, Any]]:
    cases = _Cases()
    case = cases.case
    scope = Annotated[Principal, require("tags:write")]

    r = case("query parameter")

    @r.post("/x")
    async def q(t: _Thing, conn: WriteConnectionDep, p: scope, n: int = Query(1)) -> None: ...

    r = case("path parameter")

    @r.post("/x/{key}")
    async def pp(key: str, t: _Thing, conn: WriteConnectionDep, p: scope) -> None: ...

    r = case("two bodies")

    @r.post("/x")
    async def two(t: _Thing, u: _Thing, conn: WriteConnectionDep, p: scope) -> None: ...

    r = case("embedded body")

    @r.post("/x")
    async def emb(
        t: Annotated[_Thing, Body(embed=True)], conn: WriteConnectionDep, p: scope
    ) -> None: ...

    r = case("a body that is not a model")

    @r.post("/x")
    async def raw(
        t: Annotated[dict[str, Any], Body()], conn: WriteConnectionDep, p: scope
    ) -> None: ...

    r = case("a typed header")

    @r.post("/x")
    async def th(
        t: _Thing, conn: WriteConnectionDep, p: scope, x_n: Annotated[int | None, Header()] = None
    ) -> None: ...

    r = case("a session, not a write connection")

    @r.post("/x")
    async def s(t: _Thing, conn: SessionDep, p: scope) -> None: ...

    r = case("public")

    @r.post("/x", dependencies=[Public])
    async def pub(t: _Thing, conn: WriteConnectionDep) -> None: ...

    return cases.params()


@pytest.mark.parametrize(
    ("name", "router", "endpoint"), _unfit_writes(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_a_route_a_hot_write_cannot_serve_is_refused(name: str, router: APIRouter, endpoint: Any):
    with pytest.raises(HotRouteError):
        compile_hot_writes(_routes(router), [HotWrite(endpoint)])


def test_a_fitting_delivery_route_compiles():
    router = APIRouter()

    @router.post("/hooks/{slug}", dependencies=[Public])
    async def hook(
        slug: str,
        request: Request,
        webhook_id: Annotated[str | None, Header(max_length=20)] = None,
    ) -> None: ...

    [compiled] = compile_hot_deliveries(_routes(router), [HotDelivery(hook)])
    assert compiled.request == "request"
    assert compiled.headers == (("webhook_id", "webhook-id", 20),)
    match = compiled.regex.match("/api/hooks/site-form")
    assert match is not None and match.groupdict() == {"slug": "site-form"}


def _unfit_deliveries() -> list[tuple[str, APIRouter, Any]]:
    cases = _Cases()
    case = cases.case

    r = case("not public")

    @r.post("/x/{slug}")
    async def private(
        slug: str, request: Request, p: Annotated[Principal, require("tags:write")]
    ) -> None: ...

    r = case("no marker")

    @r.post("/x/{slug}")
    async def unmarked(slug: str, request: Request) -> None: ...

    r = case("no request")

    @r.post("/x/{slug}", dependencies=[Public])
    async def norequest(slug: str) -> None: ...

    r = case("a body model")

    @r.post("/x/{slug}", dependencies=[Public])
    async def model(slug: str, request: Request, t: _Thing) -> None: ...

    r = case("a query parameter")

    @r.post("/x/{slug}", dependencies=[Public])
    async def query(slug: str, request: Request, n: int = Query(1)) -> None: ...

    r = case("a typed path parameter")

    @r.post("/x/{n}", dependencies=[Public])
    async def typed(n: int, request: Request) -> None: ...

    r = case("a typed header")

    @r.post("/x/{slug}", dependencies=[Public])
    async def header(
        slug: str, request: Request, x_n: Annotated[int | None, Header()] = None
    ) -> None: ...

    r = case("a connection")

    @r.post("/x/{slug}", dependencies=[Public])
    async def conn(slug: str, request: Request, c: WriteConnectionDep) -> None: ...

    return cases.params()


@pytest.mark.parametrize(
    ("name", "router", "endpoint"),
    _unfit_deliveries(),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_route_a_hot_delivery_cannot_serve_is_refused(
    name: str, router: APIRouter, endpoint: Any
):
    with pytest.raises(HotRouteError):
        compile_hot_deliveries(_routes(router), [HotDelivery(endpoint)])
