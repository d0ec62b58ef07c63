"""The shared pool (公海): releasing quiet potential customers and claiming them back."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.principal import Principal
from app.core.errors import Conflict, Forbidden, NotFound
from app.customers import service as customer_service
from app.pool import repository as repo

NOT_IN_POOL = ("No such customer in the shared pool.", "公海中没有该客户。")
RELEASE_ACTOR = "system:sweep"


async def release_quiet_customers(
    session: AsyncSession, *, cause: str, among: list[int] | None = None
) -> int:
    """Clear the owner of every quiet potential customer; one audit row each, set-based.
    `among` (the sweep's candidates, by primary key) limits the look to those customers."""
    released = await repo.release_quiet_customers(
        session, actor=RELEASE_ACTOR, cause=cause, among=among
    )
    await audit.record_many(
        session,
        actor=RELEASE_ACTOR,
        action="customer.release_to_pool",
        entity_type="customer",
        entries=[
            (code, {"owner_id": {"before": owner, "after": None}}) for code, owner in released
        ],
    )
    return len(released)


async def _visible(session: AsyncSession, principal: Principal, code: str) -> dict[str, Any]:
    try:
        return await customer_service.get(session, principal, code)
    except NotFound:
        raise NotFound(*NOT_IN_POOL) from None


async def claim(session: AsyncSession, principal: Principal, code: str) -> dict[str, Any]:
    """Take a customer from the pool. Of concurrent claims the first wins; the others get 404
    (a sales rep can no longer see it) or 409 (a caller who sees every customer)."""
    user_id = principal.user_id
    if user_id is None:
        raise Forbidden("Only staff users can claim customers.", "只有员工账号可以认领客户。")
    customer_id = await repo.claim(session, code=code, user_id=user_id, actor=principal.subject)
    if customer_id is None:
        row = await _visible(session, principal, code)
        if row["owner_id"] == user_id:
            return customer_service.to_public(row, principal)
        raise Conflict(
            "This customer has an owner; it is not in the shared pool.",
            "该客户已有负责人，不在公海中。",
        )
    await audit.record(
        session,
        actor=principal,
        action="customer.claim",
        entity_type="customer",
        entity_id=code,
        changes={"owner_id": {"before": None, "after": user_id}},
    )
    return customer_service.to_public(await _visible(session, principal, code), principal)
