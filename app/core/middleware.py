"""Pure ASGI middleware: request ids, access log, metrics, body size limit."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.context import request_id_var
from app.core.errors import PayloadTooLarge, problem_response

log = logging.getLogger("crm.access")

REQUESTS = Counter("crm_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "crm_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_SAFE_RID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Generated request ids: a random half per process and a counter, 32 hex digits like a UUID's,
# unique without a uuid4's read of the system's random source on every request.
_RID_PREFIX = secrets.token_hex(8)
_rid_numbers = itertools.count(1)


def new_request_id() -> str:
    return f"{_RID_PREFIX}{next(_rid_numbers):016x}"


# The metrics' labelled children, looked up once per label set rather than on every request
# (prometheus_client validates the labels and takes a lock on each `labels()` call).
_children: dict[tuple[str, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (str(id(metric)), *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


class _BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SAFE_RID.match(incoming) else new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status_holder = {"status": 500}

        ctype = headers.get(b"content-type", b"")
        limit = self.max_upload_bytes if ctype.startswith(b"multipart/") else self.max_body_bytes
        declared = headers.get(b"content-length")
        try:
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await problem_response(
                    None,
                    status=413,
                    type_=PayloadTooLarge.type,
                    title=PayloadTooLarge.title,
                    detail=PayloadTooLarge.detail_en,
                    headers={"x-request-id": rid},
                )(scope, receive, send)
                status_holder["status"] = 413
                return

            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise _BodyTooLarge
                return message

            async def send_wrapper(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status_holder["status"] = message["status"]
                    message.setdefault("headers", [])
                    message["headers"] = [
                        *message["headers"],
                        (b"x-request-id", rid.encode()),
                    ]
                await send(message)

            try:
                await self.app(scope, limited_receive, send_wrapper)
            except _BodyTooLarge:
                status_holder["status"] = 413
                await problem_response(
                    None,
                    status=413,
                    type_=PayloadTooLarge.type,
                    title=PayloadTooLarge.title,
                    detail=PayloadTooLarge.detail_en,
                    headers={"x-request-id": rid},
                )(scope, receive, send)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            _child(REQUESTS, scope["method"], route, str(status_holder["status"])).inc()
            _child(LATENCY, scope["method"], route).observe(elapsed)
            # Path template only: raw paths and query strings can carry customer data.
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": route,
                    "status": status_holder["status"],
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
