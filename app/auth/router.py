"""Token, refresh, logout, current user, users and service accounts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response

from app.auth import service
from app.auth.dependencies import Authenticated, Public, require
from app.auth.principal import Principal
from app.auth.schemas import (
    MeRead,
    RefreshRequest,
    ServiceAccountCreate,
    ServiceAccountCreated,
    ServiceAccountRead,
    TokenPair,
    UserCreate,
    UserRead,
    UserUpdate,
)
from app.core.config import get_settings
from app.core.db import SessionDep
from app.core.errors import NotFound, ValidationFailed, field_error

router = APIRouter(tags=["auth"])

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Bad credentials"},
    422: {"description": "Invalid request"},
    429: {"description": "Too many failed attempts"},
}


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post("/auth/token", response_model=TokenPair, responses=AUTH_ERRORS, dependencies=[Public])
async def issue_token(
    request: Request,
    session: SessionDep,
    grant_type: Annotated[str, Form()] = "password",
    username: Annotated[str | None, Form(max_length=320)] = None,
    password: Annotated[str | None, Form(max_length=256)] = None,
    client_id: Annotated[str | None, Form(max_length=64)] = None,
    client_secret: Annotated[str | None, Form(max_length=256)] = None,
    scope: Annotated[str, Form(max_length=2000)] = "",
    refresh_token: Annotated[str | None, Form(max_length=4096)] = None,
) -> TokenPair:
    """Issue tokens: OAuth2 password, client_credentials or refresh_token grant."""
    settings = get_settings()
    engine = request.app.state.engine
    if grant_type == "password":
        if not username or not password:
            raise ValidationFailed(
                errors=[field_error("username", "username and password are required", "missing")]
            )
        return await service.login_password(
            session,
            engine,
            settings,
            email=username,
            password=password,
            client_ip=_client_ip(request),
        )
    if grant_type == "client_credentials":
        if not client_id or not client_secret:
            raise ValidationFailed(
                errors=[field_error("client_id", "client_id and client_secret are required")]
            )
        return await service.login_client_credentials(
            session,
            engine,
            settings,
            client_id=client_id,
            client_secret=client_secret,
            requested_scopes=scope.split(),
            client_ip=_client_ip(request),
        )
    if grant_type == "refresh_token":
        if not refresh_token:
            raise ValidationFailed(errors=[field_error("refresh_token", "required", "missing")])
        return await service.refresh(session, settings, refresh_token)
    raise ValidationFailed(
        errors=[
            field_error(
                "grant_type",
                "must be one of password, client_credentials, refresh_token",
                "enum",
            )
        ]
    )


@router.post(
    "/auth/refresh", response_model=TokenPair, responses=AUTH_ERRORS, dependencies=[Public]
)
async def refresh_token(body: RefreshRequest, session: SessionDep) -> TokenPair:
    """Exchange a refresh token for a new pair; the old refresh token stops working."""
    return await service.refresh(session, get_settings(), body.refresh_token)


@router.post("/auth/logout", status_code=204, dependencies=[Public])
async def logout(body: RefreshRequest, session: SessionDep) -> Response:
    """Revoke a refresh token."""
    await service.logout(session, get_settings(), body.refresh_token)
    return Response(status_code=204)


@router.get("/users/me", response_model=MeRead, responses={401: {"description": "No token"}})
async def me(principal: Authenticated, session: SessionDep) -> MeRead:
    """The calling user, with the scopes their role grants."""
    if principal.user_id is None:
        raise NotFound("Service accounts have no user record.", "服务账号没有用户记录。")
    user = await service.get_user(session, principal.user_id)
    return MeRead(**service.user_read(user).model_dump(), scopes=sorted(principal.scopes))


@router.get("/users", response_model=list[UserRead])
async def list_users(
    session: SessionDep, _: Annotated[Principal, require("users:admin")]
) -> list[UserRead]:
    """List staff users."""
    from app.auth import repository

    return [service.user_read(u) for u in await repository.list_users(session)]


@router.post("/users", response_model=UserRead, status_code=201, responses={409: {}, 422: {}})
async def create_user(
    body: UserCreate, session: SessionDep, principal: Annotated[Principal, require("users:admin")]
) -> UserRead:
    """Create a staff user with a role."""
    return await service.create_user(session, principal, body)


@router.get("/users/{user_id}", response_model=UserRead, responses={404: {}})
async def get_user(
    user_id: int, session: SessionDep, _: Annotated[Principal, require("users:admin")]
) -> UserRead:
    """One staff user."""
    return service.user_read(await service.get_user(session, user_id))


@router.patch("/users/{user_id}", response_model=UserRead, responses={404: {}, 422: {}})
async def update_user(
    user_id: int,
    body: UserUpdate,
    session: SessionDep,
    principal: Annotated[Principal, require("users:admin")],
) -> UserRead:
    """Change a user's role, name, password or active flag (audited)."""
    return await service.update_user(session, principal, user_id, body)


@router.get("/service-accounts", response_model=list[ServiceAccountRead])
async def list_service_accounts(
    session: SessionDep, _: Annotated[Principal, require("users:admin")]
) -> list[ServiceAccountRead]:
    """List service accounts (secrets are never shown again)."""
    return await service.list_service_accounts(session)


@router.post(
    "/service-accounts",
    response_model=ServiceAccountCreated,
    status_code=201,
    responses={422: {}},
)
async def create_service_account(
    body: ServiceAccountCreate,
    session: SessionDep,
    principal: Annotated[Principal, require("users:admin")],
) -> ServiceAccountCreated:
    """Create a service account; the client secret is in this answer only."""
    return await service.create_service_account(session, principal, body)


@router.delete("/service-accounts/{account_id}", status_code=204, responses={404: {}})
async def deactivate_service_account(
    account_id: int, session: SessionDep, principal: Annotated[Principal, require("users:admin")]
) -> Response:
    """Deactivate a service account; its tokens stop being issued."""
    await service.deactivate_service_account(session, principal, account_id)
    return Response(status_code=204)
