"""Tasks (follow-ups with an assignee and a due time) and the caller's reminders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.principal import Principal
from app.core.db import Writer
from app.core.errors import (
    Forbidden,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
    field_error,
)
from app.core.pagination import decode_cursor, encode_cursor
from app.customers import service as customer_service
from app.segments import service as segment_service
from app.tasks import repository as repo
from app.tasks.schemas import TaskCreate, TaskUpdate

TASK_NOT_FOUND = ("Task not found.", "任务不存在。")


def to_public(row: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    return {
        "id": row["id"],
        "customer_code": row["customer_code"],
        "interaction_id": row["interaction_id"],
        "title": row["title"],
        "note": row["note"],
        "assignee_id": row["assignee_id"],
        "due_at": row["due_at"],
        "status": row["status"],
        "completed_at": row["completed_at"],
        "overdue": row["status"] == "open" and row["due_at"] < now,
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "created_by": row["created_by"],
    }


async def require_staff(session: Writer, user_id: int, field: str) -> Principal:
    """An active staff user, or a 422 naming `field`."""
    staff = await repo.staff_principal(session, user_id)
    if staff is None:
        raise ValidationFailed(errors=[field_error(field, "no such active user")])
    return staff


async def check_assignee(session: Writer, assignee_id: int, customer_id: int, field: str) -> None:
    """A task goes only to someone who can see its customer (a rep: own or pool customers)."""
    staff = await require_staff(session, assignee_id, field)
    if not await repo.customer_visible_to(session, customer_id, staff):
        raise ValidationFailed(errors=[field_error(field, "this user cannot see the customer")])


def default_assignee(principal: Principal, given: int | None, field: str) -> int:
    assignee = given if given is not None else principal.user_id
    if assignee is None:
        raise ValidationFailed(errors=[field_error(field, "required for service accounts")])
    return assignee


async def create(session: AsyncSession, principal: Principal, data: TaskCreate) -> dict[str, Any]:
    customer_id = await customer_service.require_writable(session, principal, data.customer_code)
    assignee = default_assignee(principal, data.assignee_id, "assignee_id")
    if assignee != principal.user_id:
        await check_assignee(session, assignee, customer_id, "assignee_id")
    task_id = await repo.insert_task(
        session,
        {
            "customer_id": customer_id,
            "title": data.title,
            "note": data.note,
            "assignee_id": assignee,
            "due_at": data.due_at,
            "created_by": principal.subject,
            "updated_by": principal.subject,
        },
    )
    await audit.record(
        session,
        actor=principal,
        action="task.create",
        entity_type="task",
        entity_id=task_id,
        changes={
            "customer_code": {"before": None, "after": data.customer_code},
            "assignee_id": {"before": None, "after": assignee},
            "due_at": {"before": None, "after": data.due_at.isoformat()},
        },
    )
    return await get(session, principal, task_id)


async def get(session: AsyncSession, principal: Principal, task_id: int) -> dict[str, Any]:
    row = await repo.get(session, principal, task_id)
    if row is None:
        raise NotFound(*TASK_NOT_FOUND)
    return to_public(row)


def _audit_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


async def update(
    session: AsyncSession,
    principal: Principal,
    task_id: int,
    data: TaskUpdate,
    *,
    if_match: int | None,
) -> dict[str, Any]:
    row = await repo.lock_for_update(session, principal, task_id)
    if row is None:
        raise NotFound(*TASK_NOT_FOUND)
    if if_match is not None and row["version"] != if_match:
        raise PreconditionFailed(extra={"current_version": row["version"]})
    patch = data.model_dump(exclude_unset=True)
    for key in ("title", "assignee_id", "due_at", "status"):
        if key in patch and patch[key] is None:
            raise ValidationFailed(errors=[field_error(key, "cannot be empty", "missing")])
    is_assignee = principal.user_id is not None and row["assignee_id"] == principal.user_id
    if not row["can_write"] and not (is_assignee and patch.keys() <= {"status", "note"}):
        raise Forbidden(
            "You can change tasks of customers you own, or complete tasks assigned to you.",
            "您只能修改自己负责客户的任务，或完成分配给您的任务。",
        )
    if "assignee_id" in patch and patch["assignee_id"] != row["assignee_id"]:
        await check_assignee(session, patch["assignee_id"], row["customer_id"], "assignee_id")
    changes = {
        key: {"before": _audit_value(row[key]), "after": _audit_value(value)}
        for key, value in patch.items()
        if row[key] != value
    }
    if not changes:
        return to_public(row)
    values = {key: patch[key] for key in changes}
    if "status" in values:
        values["completed_at"] = datetime.now(UTC) if values["status"] == "done" else None
    await repo.update_task(session, task_id, {**values, "updated_by": principal.subject})
    await audit.record(
        session,
        actor=principal,
        action="task.update",
        entity_type="task",
        entity_id=task_id,
        changes=changes,
    )
    return await get(session, principal, task_id)


def user_filter(principal: Principal, value: str | None, field: str) -> int | None:
    """A user-id query filter that also takes `me` (shared by tasks and interactions)."""
    if value is None:
        return None
    if value == "me":
        if principal.user_id is None:
            raise ValidationFailed(errors=[field_error(field, "you are not a staff user")])
        return principal.user_id
    if not value.isdigit():
        raise ValidationFailed(errors=[field_error(field, "a user id or `me`")])
    return int(value)


async def list_tasks(
    session: AsyncSession,
    principal: Principal,
    *,
    assignee: str | None,
    status: list[str],
    customer_code: str | None,
    due_from: datetime | None,
    due_to: datetime | None,
    overdue: bool,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    customer_id = None
    if customer_code is not None:
        customer_id = await customer_service.require_visible(session, principal, customer_code)
    raw = decode_cursor(cursor, 2)
    after = None
    if raw is not None:
        try:
            after = (datetime.fromisoformat(str(raw[0])), int(raw[1]))
        except (TypeError, ValueError):
            raise ValidationFailed(errors=[field_error("cursor", "Invalid cursor.")]) from None
    now = datetime.now(UTC)
    stmt = repo.list_statement(
        principal,
        assignee_id=user_filter(principal, assignee, "assignee"),
        status=status,
        customer_id=customer_id,
        due_from=due_from,
        due_to=due_to,
        overdue_at=now if overdue else None,
        after=after,
        limit=limit + 1,
    )
    rows = (await session.execute(stmt)).mappings().all()
    items = [to_public(dict(r), now) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([last["due_at"].isoformat(), last["id"]])
    return {"items": items, "next_cursor": next_cursor}


# ---- reminders -------------------------------------------------------------------------------


def _days_since(value: datetime, now: datetime) -> int:
    return int((now - value).total_seconds() // 86400)


async def reminders(
    session: AsyncSession, principal: Principal, *, scope: str, limit: int
) -> dict[str, Any]:
    """The caller's reminders (`mine`): tasks assigned to them, customers they own. `all` (for
    roles that see every customer): everyone's overdue tasks and owned customers. A sales rep
    sees only their own either way, since visibility is applied underneath."""
    mine = scope == "mine" or principal.own_customers_only
    rules = (await segment_service.current_rules(session)).reminders
    now = datetime.now(UTC)
    task_count, task_rows = await repo.overdue_tasks(
        session, principal, mine=mine, now=now, limit=limit
    )
    stale_count, stale_rows = await repo.customers_due(
        session,
        principal,
        mine=mine,
        cutoffs={None: now - timedelta(days=rules.stale_days)},
        limit=limit,
    )
    cadence = {str(tier): days for tier, days in rules.cadence_days.items()}
    cadence_count, cadence_rows = await repo.customers_due(
        session,
        principal,
        mine=mine,
        cutoffs={tier: now - timedelta(days=days) for tier, days in cadence.items()},
        limit=limit,
    )

    def customer(row: Any, with_cadence: bool) -> dict[str, Any]:
        return {
            "code": row["code"],
            "name": row["name"],
            "owner_id": row["owner_id"],
            "value_tier": row["value_tier"],
            "lifecycle": row["lifecycle"],
            "last_follow_up_at": row["last_follow_up_at"],
            "next_follow_up_at": row["next_follow_up_at"],
            "days_since_follow_up": _days_since(row["last_touch"], now),
            "cadence_days": cadence.get(row["value_tier"]) if with_cadence else None,
        }

    return {
        "scope": "mine" if mine else "all",
        "overdue_tasks": {"count": task_count, "items": [to_public(r, now) for r in task_rows]},
        "stale_customers": {
            "count": stale_count,
            "threshold_days": rules.stale_days,
            "items": [customer(r, False) for r in stale_rows],
        },
        "cadence_due": {
            "count": cadence_count,
            "items": [customer(r, True) for r in cadence_rows],
        },
        "cadence_days": cadence,
    }
