"""Hot routes: the busiest routes answered beside FastAPI, without its route search and
dependency solving (about two fifths of a get-one request's CPU, more than the request's own
work; bench/results/20261201-s8-notes.md; a fifth of recording an interaction).

A hot read is declared from its FastAPI route, which stays its definition: the OpenAPI
document, the permission (the route's `require(...)` scope) and the code that runs (the route
and the hot read call the same function). It is refused at startup when the route takes
anything the hot read does not give it the same way (query, header or body parameters,
typed path parameters, other dependencies), or when an earlier route could claim its paths.
What it answers goes through the app's own exception handlers, inside every middleware.

A hot write (a POST taking one JSON body model, a write connection, a permission and optional
string headers) answers only the requests FastAPI would hand to its endpoint: a JSON object
body its model accepts, valid headers, a token holding the permission. Anything else (a body
the model rejects, no token, another content type, a client gone mid-body) is handed to FastAPI
with the body it has read, before anything was written, and gets FastAPI's own answer.

A hot delivery (a public POST whose endpoint takes the Request and reads the body itself, as
a signed webhook does, with plain str path parameters and optional str headers) is called with
the same arguments FastAPI would give it; a header over its limit goes to FastAPI (its 422)
before anything is read.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.dependencies import authorize, bearer_token
from app.auth.principal import Principal
from app.core.db import get_read_connection, get_write_connection, pooled_read
from app.core.errors import AppError

# What a hot read runs: the same function its FastAPI route calls.
Serve = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class HotRead:
    """`serve(connection, principal, **path_params)` answers the GET route of `endpoint`."""

    endpoint: Callable[..., Any]
    serve: Serve


@dataclass(frozen=True)
class HotWrite:
    """The POST route of `endpoint`, called with its body model, a write connection (committed
    when it returns, rolled back on any error, as `WriteConnectionDep`), the principal and its
    header parameters."""

    endpoint: Callable[..., Any]


@dataclass(frozen=True)
class HotDelivery:
    """The public POST route of `endpoint` (`dependencies=[Public]`), whose endpoint takes the
    Request and reads the body itself, with its path and header parameters."""

    endpoint: Callable[..., Any]


@dataclass
class _CompiledDelivery:
    route: APIRoute
    regex: re.Pattern[str]
    shadowed: frozenset[str]
    request: str  # the Request parameter's name
    headers: tuple[tuple[str, str, int | None], ...]  # parameter, header name, max length


@dataclass
class _CompiledWrite:
    route: APIRoute
    scope: str
    regex: re.Pattern[str]
    shadowed: frozenset[str]
    body: tuple[str, type[BaseModel]]  # parameter name, model
    connection: str  # parameter names
    principal: str
    headers: tuple[tuple[str, str, int | None], ...]  # parameter, header name, max length


@dataclass
class _Compiled:
    route: APIRoute
    serve: Serve
    scope: str  # the permission the route requires
    regex: re.Pattern[str]
    shadowed: frozenset[str] = field(default_factory=frozenset)  # paths earlier routes own


class HotRouteError(RuntimeError):
    """A hot read no longer fits its FastAPI route."""


def _framework_parameters(route: APIRoute) -> tuple[Any, ...]:
    """What no hot route gives its endpoint: cookies, router dependencies, the Request,
    Response, BackgroundTasks or SecurityScopes objects."""
    d = route.dependant
    return (
        d.cookie_params,
        route.dependencies,
        d.request_param_name,
        d.response_param_name,
        d.background_tasks_param_name,
        d.security_scopes_param_name,
    )


def _permission(route: APIRoute, connection: Callable[..., Any]) -> tuple[str, str, str]:
    """The route's `require()` scope and the names of its connection and principal
    parameters, checking it has no other dependency."""
    d = route.dependant
    name = route.path_format
    calls = {sub.call: sub.name for sub in d.dependencies}
    checks = [sub for sub in d.dependencies if hasattr(sub.call, "required_scope")]
    if len(d.dependencies) != 2 or connection not in calls or len(checks) != 1:
        raise HotRouteError(f"{name}: needs more than a connection and a permission")
    scope = getattr(checks[0].call, "required_scope", None)
    if not isinstance(scope, str) or scope in {"public", "authenticated"}:
        raise HotRouteError(f"{name}: a hot route needs an explicit permission")
    conn_name, principal_name = calls[connection], checks[0].name
    if conn_name is None or principal_name is None:
        raise HotRouteError(f"{name}: unnamed dependencies")
    return scope, conn_name, principal_name


def _required_scope(route: APIRoute) -> str:
    """The route's permission, checking it needs nothing but a read connection and a scope."""
    d = route.dependant
    name = route.path_format
    if any((d.query_params, d.header_params, d.body_params, *_framework_parameters(route))):
        raise HotRouteError(f"{name}: takes parameters a hot read does not give it")
    _plain_path_parameters(route)
    return _permission(route, get_read_connection)[0]


def _plain_path_parameters(route: APIRoute) -> None:
    """The route's path parameters are plain `str` (what the path's regex captures)."""
    for param in route.dependant.path_params:
        if param.field_info.annotation is not str or param.field_info.metadata:
            raise HotRouteError(
                f"{route.path_format}: path parameter {param.name} is not a plain str"
            )


def _sample_path(path: str) -> str:
    return re.sub(r"{[^}]+}", "0", path)


def _locate(
    routes: Sequence[tuple[str, APIRoute]], endpoint: Callable[..., Any], method: str
) -> tuple[APIRoute, re.Pattern[str], frozenset[str]]:
    """The `method` route of `endpoint` in `routes` (full path, route; in FastAPI's matching
    order), its full-path regex, and the static paths of earlier `method` routes that the regex
    would also match (they stay theirs); an earlier parameterised route that could match makes
    it ambiguous."""
    position = next(
        (
            i
            for i, (_, r) in enumerate(routes)
            if r.endpoint is endpoint and method in (r.methods or ())
        ),
        None,
    )
    if position is None:
        raise HotRouteError(f"{endpoint.__name__}: no {method} route serves it")
    full, route = routes[position]
    prefix = full.removesuffix(route.path_format)
    regex = re.compile("^" + re.escape(prefix) + route.path_regex.pattern.removeprefix("^"))
    shadowed = set()
    for earlier_full, earlier in routes[:position]:
        if method not in (earlier.methods or ()) or not regex.match(_sample_path(earlier_full)):
            continue
        if earlier.param_convertors:
            raise HotRouteError(f"{full}: {earlier_full} may claim the same paths")
        shadowed.add(earlier_full)
    return route, regex, frozenset(shadowed)


def compile_hot_reads(
    routes: Sequence[tuple[str, APIRoute]], reads: Iterable[HotRead]
) -> list[_Compiled]:
    """Match each hot read to its GET route in `routes` (see `_locate`)."""
    out = []
    for read in reads:
        route, regex, shadowed = _locate(routes, read.endpoint, "GET")
        out.append(_Compiled(route, read.serve, _required_scope(route), regex, shadowed))
    return out


def _header(param: Any, name: str) -> tuple[str, str, int | None]:
    """A header parameter the hot write reads as FastAPI does (`str | None = None`, at most a
    maximum length): its parameter name, the header it comes from, its maximum length."""
    info = param.field_info
    header = param.alias
    if param.alias == param.name and getattr(info, "convert_underscores", True):
        header = param.name.replace("_", "-")
    if (
        info.annotation != (str | None)
        or info.default is not None
        or info.validation_alias is not None
        or not isinstance(header, str)
        or param.config
    ):
        raise HotRouteError(f"{name}: header {param.name} is not a plain optional str")
    limit = None
    for rule in info.metadata:
        if type(rule).__name__ != "MaxLen":
            raise HotRouteError(f"{name}: header {param.name} has a rule a hot write lacks")
        limit = int(rule.max_length)
    return param.name, header, limit


def compile_hot_writes(
    routes: Sequence[tuple[str, APIRoute]], writes: Iterable[HotWrite]
) -> list[_CompiledWrite]:
    """Match each hot write to its POST route in `routes`, checking the route takes only what
    the hot write gives it: one JSON body model, a write connection, one permission and
    optional string headers."""
    out = []
    for write in writes:
        route, regex, shadowed = _locate(routes, write.endpoint, "POST")
        d = route.dependant
        name = route.path_format
        if any((d.path_params, d.query_params, *_framework_parameters(route))) or (
            len(d.body_params) != 1
        ):
            raise HotRouteError(f"{name}: takes parameters a hot write does not give it")
        body = d.body_params[0]
        model = body.field_info.annotation
        if (
            not (isinstance(model, type) and issubclass(model, BaseModel))
            or getattr(body.field_info, "embed", False)
            or body.field_info.metadata
            or getattr(body.field_info, "media_type", "application/json") != "application/json"
        ):
            raise HotRouteError(f"{name}: the body is not one JSON model")
        headers = tuple(_header(h, name) for h in d.header_params)
        scope, connection, principal = _permission(route, get_write_connection)
        out.append(
            _CompiledWrite(
                route,
                scope,
                regex,
                shadowed,
                (body.name, model),
                connection,
                principal,
                headers,
            )
        )
    return out


def compile_hot_deliveries(
    routes: Sequence[tuple[str, APIRoute]], deliveries: Iterable[HotDelivery]
) -> list[_CompiledDelivery]:
    """Match each hot delivery to its POST route in `routes`, checking the route is public and
    takes only the Request, plain str path parameters and optional str headers."""
    out = []
    for delivery in deliveries:
        route, regex, shadowed = _locate(routes, delivery.endpoint, "POST")
        d = route.dependant
        name = route.path_format
        request = d.request_param_name
        if request is None:
            raise HotRouteError(f"{name}: the endpoint does not read the request itself")
        if any(
            (
                d.query_params,
                d.body_params,
                d.cookie_params,
                d.response_param_name,
                d.background_tasks_param_name,
                d.security_scopes_param_name,
            )
        ):
            raise HotRouteError(f"{name}: takes parameters a hot delivery does not give it")
        # Public, and nothing else: the marker's dependency does nothing (no principal).
        if len(d.dependencies) != 1 or (
            getattr(d.dependencies[0].call, "required_scope", None) != "public"
        ):
            raise HotRouteError(f"{name}: a hot delivery is a public route with no dependency")
        _plain_path_parameters(route)
        headers = tuple(_header(h, name) for h in d.header_params)
        out.append(_CompiledDelivery(route, regex, shadowed, request, headers))
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


async def _respond(
    answer: Callable[[], Awaitable[Response]],
    request: Request,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Send what `answer` returns, or what the app's handler makes of its exception (as from a
    FastAPI route: the catch-all's errors propagate to ServerErrorMiddleware)."""
    try:
        response = await answer()
    except Exception as exc:
        handler = _handler_for(scope["app"], exc)
        if handler is None:
            raise
        response = await handler(request, exc)
    await response(scope, receive, send)


class HotRouteMiddleware:
    """The innermost middleware: answers the hot routes, hands everything else to FastAPI."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        reads: Sequence[_Compiled] = (),
        writes: Sequence[_CompiledWrite] = (),
        deliveries: Sequence[_CompiledDelivery] = (),
    ) -> None:
        self.app = app
        self.reads = reads
        self.writes = writes
        self.deliveries = deliveries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            if method == "GET" and self.reads:
                path = get_route_path(scope)
                for read in self.reads:
                    match = read.regex.match(path)
                    if match is not None and path not in read.shadowed:
                        await self._serve(read, match, scope, receive, send)
                        return
            elif method == "POST" and (self.writes or self.deliveries):
                path = get_route_path(scope)
                for write in self.writes:
                    if write.regex.match(path) is not None and path not in write.shadowed:
                        await self._write(write, scope, receive, send)
                        return
                for delivery in self.deliveries:
                    match = delivery.regex.match(path)
                    if match is not None and path not in delivery.shadowed:
                        await self._deliver(delivery, match, scope, receive, send)
                        return
        await self.app(scope, receive, send)

    @staticmethod
    def _matched(route: APIRoute, scope: Scope, params: dict[str, Any]) -> None:
        """What FastAPI's router records for a matched route (the access log's route label)."""
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = params

    async def _serve(
        self, read: _Compiled, match: re.Match[str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        params = match.groupdict()
        self._matched(read.route, scope, params)
        request = Request(scope, receive)

        async def answer() -> Response:
            principal: Principal = authorize(
                bearer_token(request.headers.get("authorization")), read.scope
            )
            async with pooled_read(scope["app"].state.engine) as conn:
                return await read.serve(conn, principal, **params)

        await _respond(answer, request, scope, receive, send)

    async def _write(
        self, write: _CompiledWrite, scope: Scope, receive: Receive, send: Send
    ) -> None:
        # The whole body first (the request context's size limit applies as it reads), kept to
        # hand to FastAPI as it came when the hot write does not take the request.
        received: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":  # the client left: FastAPI's way
                await self._to_fastapi(received, scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        request = Request(scope, receive)
        arguments = _write_arguments(write, request, b"".join(chunks))
        if arguments is None:
            await self._to_fastapi(received, scope, receive, send)
            return
        self._matched(write.route, scope, {})

        async def answer() -> Response:
            conn: AsyncConnection
            async with scope["app"].state.engine.begin() as conn:
                arguments[write.connection] = conn
                response: Response = await write.route.endpoint(**arguments)
                return response

        await _respond(answer, request, scope, receive, send)

    async def _deliver(
        self,
        delivery: _CompiledDelivery,
        match: re.Match[str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        request = Request(scope, receive)
        arguments = _header_arguments(delivery.headers, request)
        if arguments is None:  # nothing read yet: FastAPI answers as it would
            await self.app(scope, receive, send)
            return
        params = match.groupdict()
        self._matched(delivery.route, scope, params)
        arguments |= params
        arguments[delivery.request] = request

        async def answer() -> Response:
            response: Response = await delivery.route.endpoint(**arguments)
            return response

        await _respond(answer, request, scope, receive, send)

    async def _to_fastapi(
        self, received: list[Message], scope: Scope, receive: Receive, send: Send
    ) -> None:
        pending = list(received)

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)


def _write_arguments(write: _CompiledWrite, request: Request, body: bytes) -> dict[str, Any] | None:
    """The endpoint's arguments (but the connection) when FastAPI would call it with exactly
    these; None when FastAPI is to answer (with a 4xx of its own, or by its own parsing)."""
    headers = request.headers
    content_type = headers.get("content-type")
    if content_type is None or content_type.split(";")[0].strip().lower() != "application/json":
        return None
    try:
        data = orjson.loads(body)  # stricter than json.loads: what it refuses FastAPI parses
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    name, model = write.body
    try:
        arguments: dict[str, Any] = {name: model.model_validate(data)}
    except ValidationError:
        return None
    header_arguments = _header_arguments(write.headers, request)
    if header_arguments is None:
        return None
    arguments |= header_arguments
    try:
        arguments[write.principal] = authorize(
            bearer_token(headers.get("authorization")), write.scope
        )
    except AppError:
        return None
    return arguments


def _header_arguments(
    headers: Sequence[tuple[str, str, int | None]], request: Request
) -> dict[str, Any] | None:
    """The header parameters as FastAPI gives them (the first of a repeated header, or None);
    None when one is over its maximum length (FastAPI's 422)."""
    out: dict[str, Any] = {}
    for param, header, limit in headers:
        value = request.headers.get(header)
        if value is not None and limit is not None and len(value) > limit:
            return None
        out[param] = value
    return out
