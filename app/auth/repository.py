"""SQL for users, service accounts, refresh tokens and login throttling."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models.user import LoginFailure, RefreshToken, ServiceAccount, User


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email))


async def user_by_id(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def user_names(session: AsyncSession, ids: list[int]) -> dict[int, str]:
    rows = await session.execute(
        select(User.id, func.coalesce(User.display_name, User.email)).where(User.id.in_(ids))
    )
    return {int(r[0]): str(r[1]) for r in rows.all()}


async def list_users(session: AsyncSession) -> list[User]:
    return list((await session.scalars(select(User).order_by(User.id))).all())


async def service_account_by_client_id(
    session: AsyncSession, client_id: str
) -> ServiceAccount | None:
    return await session.scalar(select(ServiceAccount).where(ServiceAccount.client_id == client_id))


async def list_service_accounts(session: AsyncSession) -> list[ServiceAccount]:
    return list((await session.scalars(select(ServiceAccount).order_by(ServiceAccount.id))).all())


async def store_refresh(
    session: AsyncSession, *, jti: str, user_id: int, expires_at: datetime
) -> None:
    session.add(RefreshToken(jti=uuid.UUID(jti), user_id=user_id, expires_at=expires_at))
    await session.flush()


async def consume_refresh(session: AsyncSession, jti: str) -> int | None:
    """Revoke an unrevoked, unexpired refresh token; return its user, or None when not usable.

    One UPDATE … RETURNING, so two concurrent refreshes with the same token cannot both win.
    """
    now = datetime.now(UTC)
    result = await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.jti == uuid.UUID(jti),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > now,
        )
        .values(revoked_at=now)
        .returning(RefreshToken.user_id)
    )
    return result.scalar_one_or_none()


async def revoke_all_for_user(session: AsyncSession, user_id: int) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


async def recent_failures(
    session: AsyncSession, keys: list[str], window_seconds: int
) -> dict[str, int]:
    since = datetime.now(UTC) - timedelta(seconds=window_seconds)
    rows = await session.execute(
        select(LoginFailure.key, func.count())
        .where(LoginFailure.key.in_(keys), LoginFailure.at >= since)
        .group_by(LoginFailure.key)
    )
    return {key: int(n) for key, n in rows.all()}


async def record_failure(conn: AsyncConnection, keys: list[str], window_seconds: int) -> None:
    now = datetime.now(UTC)
    await conn.execute(insert(LoginFailure), [{"key": k, "at": now} for k in keys])
    # Housekeeping: old failures no longer count for anything.
    await conn.execute(
        delete(LoginFailure).where(LoginFailure.at < now - timedelta(seconds=window_seconds * 4))
    )


async def clear_failures(session: AsyncSession, keys: list[str]) -> None:
    await session.execute(delete(LoginFailure).where(LoginFailure.key.in_(keys)))
