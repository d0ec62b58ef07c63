"""Auth, user and service-account API shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from app.auth.permissions import Role


class TokenPair(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int
    refresh_token: str | None = None
    scope: str | None = None


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=10, max_length=4096)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr
    password: str = Field(min_length=8, max_length=256)
    role: Role
    display_name: str | None = Field(default=None, max_length=100)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str | None = Field(default=None, min_length=8, max_length=256)
    role: Role | None = None
    display_name: str | None = Field(default=None, max_length=100)
    is_active: bool | None = None


class UserRead(BaseModel):
    id: int
    email: str
    display_name: str | None
    role: Role
    is_active: bool
    created_at: datetime


class MeRead(UserRead):
    scopes: list[str]


class ServiceAccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1)


class ServiceAccountRead(BaseModel):
    id: int
    name: str
    client_id: str
    scopes: list[str]
    is_active: bool
    created_at: datetime


class ServiceAccountCreated(ServiceAccountRead):
    client_secret: str = Field(description="Shown once; store it now.")
