"""Login, refresh, logout, users and service accounts."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.audit import service as audit
from app.auth import passwords, repository, tokens
from app.auth.permissions import ROLE_SCOPES, SCOPES, Role
from app.auth.principal import Principal
from app.auth.schemas import (
    ServiceAccountCreate,
    ServiceAccountCreated,
    ServiceAccountRead,
    TokenPair,
    UserCreate,
    UserRead,
    UserUpdate,
)
from app.core.config import Settings
from app.core.errors import (
    Conflict,
    NotFound,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
    field_error,
)
from app.models.user import ServiceAccount, User

BAD_LOGIN = ("Incorrect email or password.", "邮箱或密码错误。")


def _throttle_keys(login: str, client_ip: str | None) -> tuple[str, str]:
    user_key = hashlib.sha256(("login:" + login.strip().lower()).encode()).hexdigest()
    ip_key = hashlib.sha256(("ip:" + (client_ip or "unknown")).encode()).hexdigest()
    return user_key, ip_key


async def _check_throttle(
    session: AsyncSession, settings: Settings, user_key: str, ip_key: str
) -> None:
    counts = await repository.recent_failures(
        session, [user_key, ip_key], settings.login_window_seconds
    )
    # An address gets more room than one account: an office shares one IP.
    if (
        counts.get(user_key, 0) >= settings.login_max_failures
        or counts.get(ip_key, 0) >= settings.login_max_failures * 10
    ):
        raise TooManyRequests(headers={"Retry-After": str(settings.login_window_seconds)})


async def _fail(engine: AsyncEngine, settings: Settings, keys: list[str]) -> Unauthorized:
    # Written in its own transaction: the request's own transaction rolls back with the error.
    async with engine.begin() as conn:
        await repository.record_failure(conn, keys, settings.login_window_seconds)
    return Unauthorized(*BAD_LOGIN)


def _user_scopes(role: Role) -> list[str]:
    return sorted(ROLE_SCOPES[role])


async def _issue_user_tokens(session: AsyncSession, settings: Settings, user: User) -> TokenPair:
    role = Role(user.role)
    subject = f"user:{user.id}"
    access = tokens.issue_access(settings, subject=subject, role=role, scopes=_user_scopes(role))
    refresh, jti, expires = tokens.issue_refresh(settings, subject=subject)
    await repository.store_refresh(session, jti=jti, user_id=user.id, expires_at=expires)
    return TokenPair(
        access_token=access,
        refresh_token=refresh,
        expires_in=settings.access_token_minutes * 60,
        scope=" ".join(_user_scopes(role)),
    )


async def login_password(
    session: AsyncSession,
    engine: AsyncEngine,
    settings: Settings,
    *,
    email: str,
    password: str,
    client_ip: str | None,
) -> TokenPair:
    user_key, ip_key = _throttle_keys(email, client_ip)
    await _check_throttle(session, settings, user_key, ip_key)
    user = await repository.user_by_email(session, email.strip())
    if user is None or not user.is_active:
        passwords.burn_verify(password)
        raise await _fail(engine, settings, [user_key, ip_key])
    if not passwords.verify_secret(password, user.password_hash):
        raise await _fail(engine, settings, [user_key, ip_key])
    await repository.clear_failures(session, [user_key])
    return await _issue_user_tokens(session, settings, user)


async def login_client_credentials(
    session: AsyncSession,
    engine: AsyncEngine,
    settings: Settings,
    *,
    client_id: str,
    client_secret: str,
    requested_scopes: list[str],
    client_ip: str | None,
) -> TokenPair:
    key, ip_key = _throttle_keys("client:" + client_id, client_ip)
    await _check_throttle(session, settings, key, ip_key)
    account = await repository.service_account_by_client_id(session, client_id)
    if account is None or not account.is_active:
        passwords.burn_verify(client_secret)
        raise await _fail(engine, settings, [key, ip_key])
    if not passwords.verify_secret(client_secret, account.secret_hash):
        raise await _fail(engine, settings, [key, ip_key])
    granted = set(account.scopes)
    if requested_scopes:
        unknown = set(requested_scopes) - granted
        if unknown:
            raise ValidationFailed(
                "The account does not hold some requested scopes.",
                "该服务账号没有所请求的部分权限范围。",
                errors=[field_error("scope", f"not granted: {' '.join(sorted(unknown))}")],
            )
        granted = set(requested_scopes)
    scopes = sorted(granted | {"meta:read"})
    access = tokens.issue_access(
        settings, subject=f"service:{account.id}", role=None, scopes=scopes
    )
    return TokenPair(
        access_token=access, expires_in=settings.access_token_minutes * 60, scope=" ".join(scopes)
    )


async def refresh(session: AsyncSession, settings: Settings, refresh_token: str) -> TokenPair:
    """Rotate: the presented refresh token is revoked and a new pair issued."""
    try:
        claims = tokens.decode(settings, refresh_token, expected_type="refresh")
    except tokens.InvalidToken as exc:
        raise Unauthorized(
            "The refresh token is invalid or expired.", "刷新令牌无效或已过期。"
        ) from exc
    user_id = await repository.consume_refresh(session, str(claims["jti"]))
    if user_id is None:
        raise Unauthorized("The refresh token was revoked.", "刷新令牌已被吊销。")
    user = await repository.user_by_id(session, user_id)
    if user is None or not user.is_active:
        raise Unauthorized()
    return await _issue_user_tokens(session, settings, user)


async def logout(session: AsyncSession, settings: Settings, refresh_token: str) -> None:
    try:
        claims = tokens.decode(settings, refresh_token, expected_type="refresh")
    except tokens.InvalidToken:
        return  # logging out with a dead token is already done
    await repository.consume_refresh(session, str(claims["jti"]))


def user_read(user: User) -> UserRead:
    return UserRead(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=Role(user.role),
        is_active=user.is_active,
        created_at=user.created_at,
    )


async def staff_names(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    """Display names (else emails) of staff users, for labels in reports."""
    return await repository.user_names(session, sorted(ids)) if ids else {}


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await repository.user_by_id(session, user_id)
    if user is None:
        raise NotFound()
    return user


async def create_user(session: AsyncSession, actor: Principal | str, data: UserCreate) -> UserRead:
    if await repository.user_by_email(session, str(data.email)) is not None:
        raise Conflict(
            "A user with this email exists.",
            "该邮箱的用户已存在。",
            errors=[field_error("email", "already registered", "duplicate")],
        )
    user = User(
        email=str(data.email).lower(),
        password_hash=passwords.hash_secret(data.password),
        role=data.role.value,
        display_name=data.display_name,
    )
    session.add(user)
    await session.flush()
    await session.refresh(user)
    await audit.record(
        session,
        actor=actor,
        action="user.create",
        entity_type="user",
        entity_id=user.id,
        changes={"role": {"before": None, "after": user.role}},
    )
    return user_read(user)


async def update_user(
    session: AsyncSession, actor: Principal, user_id: int, data: UserUpdate
) -> UserRead:
    user = await get_user(session, user_id)
    changes: dict[str, Any] = {}
    patch = data.model_dump(exclude_unset=True)
    for field in ("role", "display_name", "is_active"):
        if field in patch and patch[field] is not None:
            new = patch[field].value if field == "role" else patch[field]
            if getattr(user, field) != new:
                changes[field] = {"before": getattr(user, field), "after": new}
                setattr(user, field, new)
    if patch.get("password"):
        user.password_hash = passwords.hash_secret(patch["password"])
        changes["password"] = {"before": "***", "after": "***"}
    if changes:
        if {"role", "is_active", "password"} & changes.keys():
            # A changed role or a disabled account must not keep refreshing old privileges.
            await repository.revoke_all_for_user(session, user.id)
        await session.flush()
        action = "user.permission_change" if "role" in changes else "user.update"
        await audit.record(
            session,
            actor=actor,
            action=action,
            entity_type="user",
            entity_id=user.id,
            changes=changes,
        )
    await session.refresh(user)
    return user_read(user)


def _account_read(account: ServiceAccount) -> ServiceAccountRead:
    return ServiceAccountRead(
        id=account.id,
        name=account.name,
        client_id=account.client_id,
        scopes=list(account.scopes),
        is_active=account.is_active,
        created_at=account.created_at,
    )


async def create_service_account(
    session: AsyncSession, actor: Principal, data: ServiceAccountCreate
) -> ServiceAccountCreated:
    unknown = sorted(set(data.scopes) - set(SCOPES))
    if unknown:
        raise ValidationFailed(
            errors=[field_error("scopes", f"unknown scopes: {', '.join(unknown)}", "enum")]
        )
    secret = secrets.token_urlsafe(32)
    account = ServiceAccount(
        name=data.name,
        client_id="sa_" + secrets.token_hex(8),
        secret_hash=passwords.hash_secret(secret),
        scopes=sorted(set(data.scopes)),
    )
    session.add(account)
    await session.flush()
    await session.refresh(account)
    await audit.record(
        session,
        actor=actor,
        action="service_account.create",
        entity_type="service_account",
        entity_id=account.id,
        changes={"scopes": {"before": None, "after": account.scopes}},
    )
    return ServiceAccountCreated(**_account_read(account).model_dump(), client_secret=secret)


async def list_service_accounts(session: AsyncSession) -> list[ServiceAccountRead]:
    return [_account_read(a) for a in await repository.list_service_accounts(session)]


async def deactivate_service_account(
    session: AsyncSession, actor: Principal, account_id: int
) -> None:
    account = await session.get(ServiceAccount, account_id)
    if account is None:
        raise NotFound()
    if account.is_active:
        account.is_active = False
        await session.flush()
        await audit.record(
            session,
            actor=actor,
            action="service_account.deactivate",
            entity_type="service_account",
            entity_id=account.id,
            changes={"is_active": {"before": True, "after": False}},
        )
