"""All JWT code lives here (python-jose), so the library can be swapped in one place."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from jose import JWTError, jwt

from app.core.config import Settings

REQUIRED_CLAIMS = ("exp", "iat", "sub", "jti", "aud", "iss")


class InvalidToken(Exception):
    pass


def _encode(settings: Settings, claims: dict[str, Any], lifetime: timedelta) -> tuple[str, str]:
    now = datetime.now(UTC)
    jti = str(uuid.uuid4())
    payload = {
        **claims,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
        "jti": jti,
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
    }
    token = jwt.encode(payload, settings.jwt_secret, algorithm=settings.jwt_algorithm)
    return str(token), jti


def issue_access(settings: Settings, *, subject: str, role: str | None, scopes: list[str]) -> str:
    token, _ = _encode(
        settings,
        {"sub": subject, "typ": "access", "role": role, "scopes": scopes},
        timedelta(minutes=settings.access_token_minutes),
    )
    return token


def issue_refresh(settings: Settings, *, subject: str) -> tuple[str, str, datetime]:
    lifetime = timedelta(days=settings.refresh_token_days)
    token, jti = _encode(settings, {"sub": subject, "typ": "refresh"}, lifetime)
    return token, jti, datetime.now(UTC) + lifetime


def decode(settings: Settings, token: str, *, expected_type: str) -> dict[str, Any]:
    """Verify signature, algorithm (pinned), audience, issuer, expiry and required claims."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != settings.jwt_algorithm:
            raise InvalidToken("unexpected algorithm")
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={f"require_{c}": True for c in REQUIRED_CLAIMS},
        )
    except JWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if claims.get("typ") != expected_type:
        raise InvalidToken("wrong token type")
    return claims
