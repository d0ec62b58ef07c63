"""One error hierarchy rendered as RFC 9457 problem+json, in English or Chinese."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://crm.example.com/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldProblem(BaseModel):
    field: str
    message: str
    code: str


class Problem(BaseModel):
    """RFC 9457 problem details, with per-field `errors` on validation failures."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldProblem] | None = None


_PROBLEM_CONTENT = {
    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": description, "content": _PROBLEM_CONTENT}
    for status, description in {
        308: "Merged into another customer; follow Location",
        400: "The body could not be read (not UTF-8, not JSON, broken form)",
        401: "Missing, invalid or expired credentials",
        403: "Not allowed for your role or scopes",
        404: "Not found, or not visible to you",
        409: "Conflicts with the current state",
        412: "Stale If-Match version",
        413: "Body or upload too large",
        422: "Invalid input; `errors` names each field",
        429: "Too many requests; see Retry-After",
        503: "Database unavailable or request timed out; see Retry-After",
    }.items()
}


def document_problems(routes: Any) -> None:
    """Give every route the problem responses it can answer, keeping its own descriptions."""
    from fastapi.routing import APIRoute

    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        merged = {}
        for status, spec in PROBLEM_RESPONSES.items():
            own = route.responses.get(status) or route.responses.get(str(status)) or {}
            merged[status] = {**spec, **{k: v for k, v in own.items() if k == "description"}}
        for status, own in route.responses.items():
            if status not in merged and int(status) not in merged:
                merged[status] = own
        route.responses = merged


def wants_chinese(request: Request | None) -> bool:
    if request is None:
        return False
    lang = request.headers.get("accept-language", "")
    return lang.strip().lower().startswith("zh")


class AppError(Exception):
    """Base of every error the API answers on purpose."""

    status: int = 400
    type: str = "bad-request"
    title: str = "Bad request"
    detail_en: str = "The request is invalid."
    detail_zh: str = "请求无效。"

    def __init__(
        self,
        detail_en: str | None = None,
        detail_zh: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail_en or self.detail_en)
        if detail_en is not None:
            self.detail_en = detail_en
            self.detail_zh = detail_zh or detail_en
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}


class BadRequest(AppError):
    pass


class Unauthorized(AppError):
    status, type, title = 401, "unauthorized", "Unauthorized"
    detail_en, detail_zh = "Missing or invalid credentials.", "缺少或无效的身份凭证。"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class Forbidden(AppError):
    status, type, title = 403, "forbidden", "Forbidden"
    detail_en, detail_zh = "You are not allowed to do this.", "您无权执行此操作。"


class NotFound(AppError):
    status, type, title = 404, "not-found", "Not found"
    detail_en, detail_zh = "The resource does not exist.", "资源不存在。"


class Conflict(AppError):
    status, type, title = 409, "conflict", "Conflict"
    detail_en, detail_zh = "The request conflicts with the current state.", "请求与当前状态冲突。"


class Moved(AppError):
    """A resource now lives under another key (a merged customer code → its survivor)."""

    status, type, title = 308, "moved", "Moved permanently"
    detail_en, detail_zh = "This record was merged into another.", "该记录已合并到另一条记录。"

    def __init__(self, old_key: str, new_key: str) -> None:
        super().__init__(extra={"survivor": new_key})
        self.old_key = old_key
        self.new_key = new_key


class PreconditionFailed(AppError):
    status, type, title = 412, "precondition-failed", "Precondition failed"
    detail_en = "The resource was changed by someone else; reload it and retry."
    detail_zh = "该记录已被他人修改，请刷新后重试。"


class PayloadTooLarge(AppError):
    status, type, title = 413, "payload-too-large", "Payload too large"
    detail_en, detail_zh = "The request body is too large.", "请求体过大。"


class ValidationFailed(AppError):
    status, type, title = 422, "validation-error", "Validation failed"
    detail_en, detail_zh = "Some fields are invalid.", "部分字段无效。"


class TooManyRequests(AppError):
    status, type, title = 429, "too-many-requests", "Too many requests"
    detail_en, detail_zh = "Too many attempts; retry later.", "尝试次数过多，请稍后再试。"


class ServiceUnavailable(AppError):
    status, type, title = 503, "service-unavailable", "Service unavailable"
    detail_en = "The database is unavailable; retry shortly."
    detail_zh = "数据库暂不可用，请稍后重试。"


def field_error(loc: str, message: str, code: str = "invalid") -> dict[str, Any]:
    return {"field": loc, "message": message, "code": code}


def problem_response(
    request: Request | None,
    *,
    status: int,
    type_: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + type_,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
        rid = request.scope.get("state", {}).get("request_id")
        if rid:
            body["request_id"] = rid
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def render_app_error(request: Request, exc: AppError) -> Response:
    if isinstance(exc, Moved):
        location = request.url.path.replace(f"/{exc.old_key}", f"/{exc.new_key}", 1)
        if request.url.query:
            location += "?" + request.url.query
        exc.headers["Location"] = location
    return problem_response(
        request,
        status=exc.status,
        type_=exc.type,
        title=exc.title,
        detail=exc.detail_zh if wants_chinese(request) else exc.detail_en,
        errors=exc.errors,
        headers=exc.headers,
        extra=exc.extra,
    )


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    # Drop the "body"/"query" prefix so the field reads as the client named it.
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_errors(raw: list[Any]) -> list[dict[str, Any]]:
    out = []
    for err in raw:
        loc = tuple(err.get("loc", ()))
        kind = str(err.get("type", "invalid"))
        msg = str(err.get("msg", "invalid"))
        if kind == "extra_forbidden":
            msg = "Unknown field; it cannot be set."
        msg = msg.removeprefix("Value error, ")
        out.append(field_error(_loc_to_field(loc), msg, kind))
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> Response:
        return render_app_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        zh = wants_chinese(request)
        return problem_response(
            request,
            status=422,
            type_="validation-error",
            title="Validation failed",
            detail="部分字段无效。" if zh else "Some fields are invalid.",
            errors=validation_errors(list(exc.errors())),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {
            400: "Malformed request",
            404: "Not found",
            405: "Method not allowed",
            413: "Payload too large",
        }
        kinds = {
            400: "malformed-request",
            404: "not-found",
            405: "method-not-allowed",
            413: "payload-too-large",
        }
        return problem_response(
            request,
            status=exc.status_code,
            type_=kinds.get(exc.status_code, "http-error"),
            title=titles.get(exc.status_code, "HTTP error"),
            detail=str(exc.detail),
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(DBAPIError)
    async def _db(request: Request, exc: DBAPIError) -> Response:
        # A lost connection is the client's cue to retry; a serialization failure or deadlock
        # is retried here first (ResilienceMiddleware); anything else is our bug and a 500.
        if is_connection_error(exc) or is_retryable(exc):
            log.warning("database unavailable", extra={"error": type(exc.orig).__name__})
            response = render_app_error(request, ServiceUnavailable(headers={"Retry-After": "2"}))
            # A rolled-back conflict is safe to run again; so is a read that lost its
            # connection (the pool hands the retry a fresh one).
            if is_retryable(exc) or request.method in {"GET", "HEAD"}:
                response.headers["x-crm-retryable"] = "1"
            return response
        log.exception("database error")
        return problem_response(
            request,
            status=500,
            type_="internal-error",
            title="Internal error",
            detail="An unexpected error occurred.",
        )

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(request: Request, exc: PoolTimeout) -> Response:
        # Every pooled connection stayed busy for CRM_DB_POOL_TIMEOUT_SECONDS: nothing ran.
        log.warning("database pool exhausted", extra={"event": "pool_timeout"})
        return render_app_error(request, ServiceUnavailable(headers={"Retry-After": "2"}))

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> Response:
        # The database socket refused or vanished (server restarting): retry shortly.
        log.warning("database unreachable", extra={"error": type(exc).__name__})
        return render_app_error(request, ServiceUnavailable(headers={"Retry-After": "2"}))

    @app.exception_handler(asyncpg.PostgresConnectionError)
    async def _pg_connect(request: Request, exc: Exception) -> Response:
        log.warning("database unreachable", extra={"error": type(exc).__name__})
        return render_app_error(request, ServiceUnavailable(headers={"Retry-After": "2"}))

    @app.exception_handler(asyncpg.InterfaceError)
    async def _pg_interface(request: Request, exc: Exception) -> Response:
        log.warning("database connection lost", extra={"error": type(exc).__name__})
        return render_app_error(request, ServiceUnavailable(headers={"Retry-After": "2"}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return problem_response(
            request,
            status=500,
            type_="internal-error",
            title="Internal error",
            detail="An unexpected error occurred.",
        )


RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def is_retryable(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    state = getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
    return state in RETRYABLE_SQLSTATES


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, InterfaceError | OperationalError) and exc.connection_invalidated:
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    text = type(getattr(exc, "orig", exc)).__name__
    return any(
        k in text
        for k in (
            "ConnectionDoesNotExist",
            "ConnectionFailure",
            "CannotConnectNow",
            "AdminShutdown",
        )
    )
