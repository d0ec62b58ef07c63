"""Authentication and the explicit per-route permission dependencies."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from fastapi.security.utils import get_authorization_scheme_param

from app.auth import tokens
from app.auth.permissions import SCOPES, Role
from app.auth.principal import Principal
from app.core.config import get_settings
from app.core.errors import Forbidden, Unauthorized

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


# Access tokens already verified in this process, so a busy client's token is checked once,
# not on every request. The key holds the signing secret too (a rotated secret misses), and an
# entry serves only until the token's own expiry. Bounded: cleared when full.
_VERIFIED: dict[tuple[str, str], tuple[Principal, float]] = {}
_VERIFIED_MAX = 10_000


def principal_from_token(token: str) -> Principal:
    """The principal an access token names, verifying the token unless seen (and valid) before."""
    settings = get_settings()
    key = (settings.jwt_secret, token)
    cached = _VERIFIED.get(key)
    now = time.time()
    if cached is not None and now < cached[1]:
        return cached[0]
    try:
        claims = tokens.decode(settings, token, expected_type="access")
    except tokens.InvalidToken as exc:
        raise Unauthorized(
            "The access token is invalid or expired.", "访问令牌无效或已过期。"
        ) from exc
    kind, _, raw_id = str(claims["sub"]).partition(":")
    if kind not in {"user", "service"} or not raw_id.isdigit():
        raise Unauthorized()
    role = claims.get("role")
    principal = Principal(
        kind=kind,
        id=int(raw_id),
        role=Role(role) if role else None,
        scopes=frozenset(claims.get("scopes") or ()),
    )
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[key] = (principal, float(claims["exp"]))
    return principal


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, read as `oauth2_scheme` reads it (for
    the hot reads, which answer without FastAPI's dependencies)."""
    scheme, token = get_authorization_scheme_param(authorization)
    if not authorization or scheme.lower() != "bearer":
        return None
    return token


def authorize(token: str | None, scope: str) -> Principal:
    """The principal behind `token` when it holds `scope`: 401 without a valid token, 403
    without the permission."""
    if not token:
        raise Unauthorized()
    principal = principal_from_token(token)
    if scope not in principal.scopes:
        raise Forbidden(f"This needs the '{scope}' permission.", f"此操作需要“{scope}”权限。")
    return principal


async def current_principal(
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    if not token:
        raise Unauthorized()
    return principal_from_token(token)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(scope: str) -> Any:
    """A dependency that admits only principals holding `scope`; tests read `.required_scope`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope}")

    # The token comes straight from the scheme (one dependency level, not two: this runs on
    # every request), and the scheme keeps the route's security in the OpenAPI document.
    async def _check(token: Annotated[str | None, Depends(oauth2_scheme)]) -> Principal:
        return authorize(token, scope)

    _check.required_scope = scope  # type: ignore[attr-defined]
    return Depends(_check)


def RequireScope(scope: str) -> Any:
    return Annotated[Principal, require(scope)]


async def _public(request: Request) -> None:
    return None


_public.required_scope = "public"  # type: ignore[attr-defined]
# Marks a route that deliberately needs no principal (login, health, webhooks with signatures).
Public = Depends(_public)


async def _authenticated(principal: CurrentPrincipal) -> Principal:
    return principal


_authenticated.required_scope = "authenticated"  # type: ignore[attr-defined]
# Any signed-in principal, whatever its scopes (e.g. GET /users/me).
Authenticated = Annotated[Principal, Depends(_authenticated)]
