"""Factory functions with keyword defaults for test data."""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import passwords, tokens
from app.auth.permissions import ROLE_SCOPES, Role
from app.core.config import get_settings

_seq = itertools.count(1)
DEFAULT_PASSWORD = "correct-horse-42"


@lru_cache
def _default_hash() -> str:
    return passwords.hash_secret(DEFAULT_PASSWORD)


@dataclass
class TestUser:
    __test__ = False  # a data class, not a test case

    id: int
    email: str
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def access_token_for(user_id: int, role: Role) -> str:
    return tokens.issue_access(
        get_settings(),
        subject=f"user:{user_id}",
        role=role,
        scopes=sorted(ROLE_SCOPES[role]),
    )


async def make_user(
    engine: AsyncEngine,
    *,
    role: Role = Role.sales,
    email: str | None = None,
    password: str | None = None,
    is_active: bool = True,
) -> TestUser:
    email = email or f"{role.value}{next(_seq)}@example.com"
    pw_hash = passwords.hash_secret(password) if password else _default_hash()
    async with engine.begin() as conn:
        user_id = await conn.scalar(
            text(
                "INSERT INTO users (email, password_hash, role, is_active) "
                "VALUES (:e, :h, :r, :a) RETURNING id"
            ),
            {"e": email, "h": pw_hash, "r": role.value, "a": is_active},
        )
    assert user_id is not None
    return TestUser(id=int(user_id), email=email, role=role, token=access_token_for(user_id, role))


async def make_customer(
    client: Any,
    user: TestUser,
    *,
    name: str = "北京某某科技有限公司",
    expect: int = 201,
    **fields: Any,
) -> dict[str, Any]:
    """Create a customer through the API as `user` and return its body."""
    r = await client.post("/api/v1/customers", json={"name": name, **fields}, headers=user.headers)
    assert r.status_code == expect, r.text
    return r.json()  # type: ignore[no-any-return]


async def insert_customer(
    engine: AsyncEngine,
    *,
    name: str = "测试客户",
    owner_id: int | None = None,
    code: str | None = None,
    **columns: object,
) -> str:
    """Insert a customer row directly (fast, any owner); returns its code."""
    values: dict[str, object] = {
        "code": code or f"C20260101{next(_seq):04d}",
        "name": name,
        "owner_id": owner_id,
        **columns,
    }
    names = ", ".join(values)
    params = ", ".join(f":{k}" for k in values)
    async with engine.begin() as conn:
        await conn.execute(text(f"INSERT INTO customers ({names}) VALUES ({params})"), values)
    return str(values["code"])


def migration_module(filename: str) -> ModuleType:
    """A migration script loaded as a module (its file name is not importable)."""
    path = Path(__file__).resolve().parent.parent / "alembic" / "versions" / filename
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TAGS_MIGRATION = "2026_11_23_0600-tags-segments.py"


async def seed_tag_categories(engine: AsyncEngine) -> None:
    """The default tag categories as the migration seeds them (every test starts empty)."""
    defaults = migration_module(TAGS_MIGRATION).DEFAULT_CATEGORIES
    async with engine.begin() as conn:
        for code, label in defaults:
            await conn.execute(
                text(
                    "INSERT INTO tag_categories (code, label, builtin) VALUES (:c, :l, true) "
                    "ON CONFLICT DO NOTHING"
                ),
                {"c": code, "l": label},
            )
