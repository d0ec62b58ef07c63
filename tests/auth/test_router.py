"""Login, refresh, revocation, token validation, service accounts, throttling, users."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest
from jose import jwt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import passwords
from app.auth.permissions import Role
from app.core.config import get_settings
from tests.factories import DEFAULT_PASSWORD, make_user


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/token", data={"username": username, "password": password}
    )


def _claims(**over: Any) -> dict[str, Any]:
    s = get_settings()
    now = int(time.time())
    claims = {
        "sub": "user:1",
        "typ": "access",
        "role": "admin",
        "scopes": ["users:admin"],
        "iat": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
        "aud": s.jwt_audience,
        "iss": s.jwt_issuer,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, Any], key: str | None = None, alg: str = "HS256") -> str:
    return str(jwt.encode(claims, key or get_settings().jwt_secret, algorithm=alg))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def test_login_success_gives_working_tokens(client: httpx.AsyncClient, engine: AsyncEngine):
    user = await make_user(engine, role=Role.manager)
    r = await login(client, user.email, DEFAULT_PASSWORD)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["refresh_token"]
    me = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["email"] == user.email
    assert me.json()["role"] == "manager"
    assert "reports:read" in me.json()["scopes"]


async def test_login_email_is_case_insensitive(client: httpx.AsyncClient, engine: AsyncEngine):
    user = await make_user(engine, email="Wang.Li@Example.com")
    r = await login(client, "wang.li@example.com", DEFAULT_PASSWORD)
    assert r.status_code == 200, r.text
    assert user.id


async def test_unknown_email_and_wrong_password_are_indistinguishable(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
):
    user = await make_user(engine)
    calls: list[str] = []
    real_verify = passwords.verify_secret

    def counting_verify(secret: str, hashed: str) -> bool:
        calls.append(hashed)
        return real_verify(secret, hashed)

    monkeypatch.setattr(passwords, "verify_secret", counting_verify)
    wrong = await login(client, user.email, "not-the-password")
    wrong_calls = len(calls)
    unknown = await login(client, "nobody@example.com", "not-the-password")
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: {k: v for k, v in r.json().items() if k not in {"request_id"}}  # noqa: E731
    assert strip(wrong) == strip(unknown)
    assert wrong.headers["content-type"] == "application/problem+json"
    # Both paths run exactly one argon2 verification, so their timing does not differ.
    assert wrong_calls == 1 and len(calls) == 2


async def test_inactive_user_cannot_log_in(client: httpx.AsyncClient, engine: AsyncEngine):
    user = await make_user(engine, is_active=False)
    assert (await login(client, user.email, DEFAULT_PASSWORD)).status_code == 401


async def test_login_throttled_after_repeated_failures(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    user = await make_user(engine)
    limit = get_settings().login_max_failures
    for _ in range(limit):
        assert (await login(client, user.email, "bad-password-x")).status_code == 401
    blocked = await login(client, user.email, DEFAULT_PASSWORD)
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    # Failures are recorded in the database, so every API instance sees them.
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM login_failures")) >= limit
        stored = await conn.scalar(text("SELECT string_agg(key, ',') FROM login_failures"))
    assert user.email not in str(stored)


async def test_refresh_rotates_and_old_refresh_is_rejected(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    user = await make_user(engine)
    first = (await login(client, user.email, DEFAULT_PASSWORD)).json()
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    again = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert again.status_code == 401
    via_grant = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
    )
    assert via_grant.status_code == 200


async def test_logout_revokes_refresh_token(client: httpx.AsyncClient, engine: AsyncEngine):
    user = await make_user(engine)
    pair = (await login(client, user.email, DEFAULT_PASSWORD)).json()
    out = await client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert out.status_code == 204
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 401


async def test_access_token_is_not_a_refresh_token(client: httpx.AsyncClient, engine: AsyncEngine):
    user = await make_user(engine)
    pair = (await login(client, user.email, DEFAULT_PASSWORD)).json()
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["access_token"]})
    assert r.status_code == 401
    me = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {pair['refresh_token']}"}
    )
    assert me.status_code == 401


def _alg_none_token() -> str:
    header = _b64(orjson.dumps({"alg": "none", "typ": "JWT"}))
    payload = _b64(orjson.dumps(_claims()))
    return f"{header}.{payload}."


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda: _sign(_claims(exp=int(time.time()) - 10)), id="expired"),
        pytest.param(lambda: _sign(_claims(), key="another-secret"), id="wrong-key"),
        pytest.param(lambda: _sign(_claims(aud="someone-else")), id="wrong-audience"),
        pytest.param(lambda: _sign(_claims(iss="evil")), id="wrong-issuer"),
        pytest.param(lambda: _sign(_claims(jti=None)), id="missing-jti"),
        pytest.param(lambda: _sign(_claims(iat=None)), id="missing-iat"),
        pytest.param(lambda: _sign(_claims(aud=None)), id="missing-aud"),
        pytest.param(lambda: _sign(_claims(), alg="HS512"), id="other-algorithm"),
        pytest.param(lambda: _sign(_claims(typ="refresh")), id="refresh-as-access"),
        pytest.param(_alg_none_token, id="alg-none"),
        pytest.param(lambda: _sign(_claims())[:-3] + "abc", id="tampered-signature"),
        pytest.param(lambda: "not.a.jwt", id="garbage"),
    ],
)
async def test_bad_tokens_are_rejected(client: httpx.AsyncClient, make_token: Any):
    r = await client.get("/api/v1/users", headers={"Authorization": f"Bearer {make_token()}"})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"


async def test_tampered_payload_is_rejected(client: httpx.AsyncClient, engine: AsyncEngine):
    user = await make_user(engine, role=Role.sales)
    header, _payload, sig = user.token.split(".")
    forged = _b64(orjson.dumps(_claims(sub=f"user:{user.id}", role="admin")))
    r = await client.get(
        "/api/v1/users", headers={"Authorization": f"Bearer {header}.{forged}.{sig}"}
    )
    assert r.status_code == 401


async def test_missing_token_is_401(client: httpx.AsyncClient):
    r = await client.get("/api/v1/users/me")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


async def test_service_account_scopes_enforced(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    created = await client.post(
        "/api/v1/service-accounts",
        json={"name": "marketing tool", "scopes": ["audit:read"]},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    account = created.json()
    assert account["client_secret"]
    listed = await client.get("/api/v1/service-accounts", headers=admin.headers)
    assert "client_secret" not in listed.json()[0]

    tok = await client.post(
        "/api/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": account["client_id"],
            "client_secret": account["client_secret"],
        },
    )
    assert tok.status_code == 200, tok.text
    assert "refresh_token" not in tok.json() or tok.json()["refresh_token"] is None
    headers = {"Authorization": f"Bearer {tok.json()['access_token']}"}
    assert (await client.get("/api/v1/audit", headers=headers)).status_code == 200
    assert (await client.get("/api/v1/users", headers=headers)).status_code == 403

    # A scope the account was not granted cannot be requested.
    denied = await client.post(
        "/api/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": account["client_id"],
            "client_secret": account["client_secret"],
            "scope": "users:admin",
        },
    )
    assert denied.status_code == 422

    bad_secret = await client.post(
        "/api/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": account["client_id"],
            "client_secret": "wrong",
        },
    )
    assert bad_secret.status_code == 401

    off = await client.delete(f"/api/v1/service-accounts/{account['id']}", headers=admin.headers)
    assert off.status_code == 204
    after = await client.post(
        "/api/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": account["client_id"],
            "client_secret": account["client_secret"],
        },
    )
    assert after.status_code == 401


async def test_service_account_secret_stored_hashed(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    created = (
        await client.post(
            "/api/v1/service-accounts",
            json={"name": "bi", "scopes": ["customers:read"]},
            headers=admin.headers,
        )
    ).json()
    async with engine.connect() as conn:
        stored = await conn.scalar(text("SELECT secret_hash FROM service_accounts"))
    assert created["client_secret"] not in stored
    assert stored.startswith("$argon2")


async def test_unknown_scope_rejected_for_service_account(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin = await make_user(engine, role=Role.admin)
    r = await client.post(
        "/api/v1/service-accounts",
        json={"name": "x", "scopes": ["everything"]},
        headers=admin.headers,
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "scopes"


async def test_admin_manages_users_and_role_change_is_audited(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin = await make_user(engine, role=Role.admin)
    r = await client.post(
        "/api/v1/users",
        json={"email": "li.na@example.com", "password": "long-enough-pw", "role": "sales"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    new_id = r.json()["id"]
    assert "password" not in r.json() and "password_hash" not in r.json()
    dup = await client.post(
        "/api/v1/users",
        json={"email": "LI.NA@example.com", "password": "long-enough-pw", "role": "sales"},
        headers=admin.headers,
    )
    assert dup.status_code == 409
    p = await client.patch(
        f"/api/v1/users/{new_id}", json={"role": "manager"}, headers=admin.headers
    )
    assert p.status_code == 200 and p.json()["role"] == "manager"
    audit = await client.get(
        "/api/v1/audit", params={"action": "user.permission_change"}, headers=admin.headers
    )
    entries = audit.json()["items"]
    assert len(entries) == 1
    assert entries[0]["changes"]["role"] == {"before": "sales", "after": "manager"}
    assert entries[0]["actor"] == f"user:{admin.id}"
    login_new = await login(client, "li.na@example.com", "long-enough-pw")
    assert login_new.status_code == 200


async def test_role_change_revokes_refresh_tokens(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    user = await make_user(engine, role=Role.manager)
    pair = (await login(client, user.email, DEFAULT_PASSWORD)).json()
    await client.patch(f"/api/v1/users/{user.id}", json={"role": "sales"}, headers=admin.headers)
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 401


async def test_user_write_rejects_unknown_fields(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    r = await client.post(
        "/api/v1/users",
        json={"email": "a@example.com", "password": "long-enough-pw", "role": "sales", "id": 1},
        headers=admin.headers,
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "id"
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM users")) == 1


async def test_bad_grant_type(client: httpx.AsyncClient):
    r = await client.post("/api/v1/auth/token", data={"grant_type": "implicit"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "grant_type"


async def test_chinese_problem_detail(client: httpx.AsyncClient):
    r = await client.get("/api/v1/users/me", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert r.status_code == 401
    assert r.json()["detail"] == "缺少或无效的身份凭证。"
