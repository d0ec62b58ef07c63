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


# ---- customers, interactions, sweeps (direct SQL: fast, and able to backdate) -----------------

_customer_seq = itertools.count(1)


@dataclass
class TestCustomer:
    __test__ = False

    id: int
    code: str


async def seed_customer(
    engine: AsyncEngine,
    *,
    owner_id: int | None = None,
    name: str | None = None,
    created_days_ago: float = 0,
    core_needs: str | None = None,
    lifecycle: str | None = None,
    last_follow_up_days_ago: float | None = None,
    owner_assigned_days_ago: float | None = None,
) -> TestCustomer:
    n = next(_customer_seq)
    code = f"C20980101{n:03d}"
    async with engine.begin() as conn:
        customer_id = await conn.scalar(
            text(
                "INSERT INTO customers (code, name, owner_id, created_at, core_needs, lifecycle, "
                "lifecycle_baseline, last_follow_up_at, owner_assigned_at) VALUES (:code, :name, "
                ":owner, now() - make_interval(secs => CAST(:created AS float8) * 86400), :needs, "
                "coalesce(:lifecycle, 'potential'), :lifecycle, "
                "now() - make_interval(secs => CAST(:follow_up AS float8) * 86400), "
                "now() - make_interval(secs => CAST(:assigned AS float8) * 86400)) RETURNING id"
            ),
            {
                "code": code,
                "name": name or f"测试客户{n}有限公司",
                "owner": owner_id,
                "created": created_days_ago,
                "needs": core_needs,
                "lifecycle": lifecycle,
                "follow_up": last_follow_up_days_ago,
                "assigned": owner_assigned_days_ago,
            },
        )
    assert customer_id is not None
    return TestCustomer(id=int(customer_id), code=code)


async def add_interaction(
    engine: AsyncEngine,
    customer: TestCustomer,
    *,
    days_ago: float,
    kind: str = "follow_up",
    amount: str | None = None,
    resolved: bool | None = None,
    channel: str = "phone",
) -> int:
    """Insert an interaction as an import or another process would: no recompute runs."""
    if kind == "complaint" and resolved is None:
        resolved = False
    async with engine.begin() as conn:
        interaction_id = await conn.scalar(
            text(
                "INSERT INTO interactions (customer_id, occurred_at, channel, kind, direction, "
                "amount, resolved) VALUES (:cid, "
                "now() - make_interval(secs => CAST(:ago AS float8) * 86400), "
                ":channel, :kind, 'outbound', CAST(:amount AS numeric), :resolved) RETURNING id"
            ),
            {
                "cid": customer.id,
                "ago": days_ago,
                "channel": channel,
                "kind": kind,
                "amount": amount,
                "resolved": resolved,
            },
        )
    assert interaction_id is not None
    return int(interaction_id)


async def run_sweep(engine: AsyncEngine, cause: str = "manual") -> dict[str, Any] | None:
    from app.core.db import build_sessionmaker
    from app.segments import service

    async with build_sessionmaker(engine)() as session, session.begin():
        return await service.run_sweep(session, cause=cause)


async def customer_row(engine: AsyncEngine, customer: TestCustomer) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT * FROM customers WHERE id = :id"), {"id": customer.id}
                )
            )
            .mappings()
            .one()
        )
    return dict(row)
