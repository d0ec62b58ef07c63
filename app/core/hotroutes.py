"""Hot reads: the busiest GET routes answered beside FastAPI, without its route search and
dependency solving (about two fifths of a get-one request's CPU, more than the request's own
work; bench/results/20261201-s8-notes.md).

A hot read is declared from its FastAPI route, which stays its definition: the OpenAPI
document, the permission (the route's `require(...)` scope) and the code that runs (the route
and the hot read call the same function). It is refused at startup when the route takes
anything the hot read does not give it the same way (query, header or body parameters,
typed path parameters, other dependencies), or when an earlier route could claim its paths.
What it answers goes through the app's own exception handlers, inside every middleware.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth.dependencies import authorize, bearer_token
from app.auth.principal import Principal
from app.core.db import get_read_connection, read_connection

# What a hot read runs: the same function its FastAPI route calls.
Serve = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class HotRead:
    """`serve(connection, principal, **path_params)` answers the GET route of `endpoint`."""

    endpoint: Callable[..., Any]
    serve: Serve


@dataclass
class _Compiled:
    route: APIRoute
    serve: Serve
    scope: str  # the permission the route requires
    regex: re.Pattern[str]
    shadowed: frozenset[str] = field(default_factory=frozenset)  # paths earlier routes own


class HotRouteError(RuntimeError):
    """A hot read no longer fits its FastAPI route."""


def _required_scope(route: APIRoute) -> str:
    """The route's permission, checking it needs nothing but a read connection and a scope."""
    d = route.dependant
    name = route.path_format
    takes = (
        d.query_params,
        d.header_params,
        d.cookie_params,
        d.body_params,
        route.dependencies,
        d.request_param_name,
        d.response_param_name,
        d.background_tasks_param_name,
        d.security_scopes_param_name,
    )
    if any(takes):
        raise HotRouteError(f"{name}: takes parameters a hot read does not give it")
    for param in d.path_params:
        if param.field_info.annotation is not str or param.field_info.metadata:
            raise HotRouteError(f"{name}: path parameter {param.name} is not a plain str")
    calls = [sub.call for sub in d.dependencies]
    checks = [c for c in calls if hasattr(c, "required_scope")]
    if len(calls) != 2 or get_read_connection not in calls or len(checks) != 1:
        raise HotRouteError(f"{name}: needs more than a read connection and a permission")
    scope = getattr(checks[0], "required_scope", None)
    if not isinstance(scope, str) or scope in {"public", "authenticated"}:
        raise HotRouteError(f"{name}: a hot read needs an explicit permission")
    return scope


def _sample_path(path: str) -> str:
    return re.sub(r"{[^}]+}", "0", path)


def compile_hot_reads(
    routes: Sequence[tuple[str, APIRoute]], reads: Iterable[HotRead]
) -> list[_Compiled]:
    """Match each hot read to its route in `routes` (full path, route; in FastAPI's matching
    order). The static GET paths of earlier routes that its pattern would also match stay
    theirs; an earlier parameterised GET route that could match makes it ambiguous."""
    out = []
    for read in reads:
        position = next(
            (
                i
                for i, (_, r) in enumerate(routes)
                if r.endpoint is read.endpoint and "GET" in (r.methods or ())
            ),
            None,
        )
        if position is None:
            raise HotRouteError(f"{read.endpoint.__name__}: no GET route serves it")
        full, route = routes[position]
        prefix = full.removesuffix(route.path_format)
        regex = re.compile("^" + re.escape(prefix) + route.path_regex.pattern.removeprefix("^"))
        shadowed = set()
        for earlier_full, earlier in routes[:position]:
            if "GET" not in (earlier.methods or ()) or not regex.match(_sample_path(earlier_full)):
                continue
            if earlier.param_convertors:
                raise HotRouteError(f"{full}: {earlier_full} may claim the same paths")
            shadowed.add(earlier_full)
        out.append(_Compiled(route, read.serve, _required_scope(route), regex, frozenset(shadowed)))
    return out


def _handler_for(app: Any, exc: Exception) -> Callable[..., Awaitable[Response]] | None:
    """The app's exception handler for `exc`, looked up as Starlette's ExceptionMiddleware
    does; errors handled by the catch-all (a 500) are left to propagate to it, as they do
    from a FastAPI route."""
    handlers = app.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            handler: Callable[..., Awaitable[Response]] = handlers[cls]
            return handler
    return None


class HotReadMiddleware:
    """The innermost middleware: answers the hot reads, hands everything else to FastAPI."""

    def __init__(self, app: ASGIApp, *, reads: Sequence[_Compiled]) -> None:
        self.app = app
        self.reads = reads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = get_route_path(scope)
            for read in self.reads:
                match = read.regex.match(path)
                if match is not None and path not in read.shadowed:
                    await self._serve(read, match, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(
        self, read: _Compiled, match: re.Match[str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        params = match.groupdict()
        # What FastAPI's router records for a matched route (the access log's route label).
        scope["route"] = read.route
        scope["endpoint"] = read.route.endpoint
        scope["path_params"] = params
        request = Request(scope, receive)
        try:
            principal: Principal = authorize(
                bearer_token(request.headers.get("authorization")), read.scope
            )
            conn: AsyncConnection
            async with read_connection(scope["app"].state.engine) as conn:
                response = await read.serve(conn, principal, **params)
        except Exception as exc:
            handler = _handler_for(scope["app"], exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)
