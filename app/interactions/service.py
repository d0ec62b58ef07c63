"""Interactions: recording a touch recomputes the customer's classes in the same transaction;
the customer timeline merges interactions, tasks, class changes and audited edits."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.principal import Principal
from app.core import idempotency
from app.core.config import get_settings
from app.core.db import Reader, Writer
from app.core.errors import NotFound, PreconditionFailed, ValidationFailed, field_error
from app.core.pagination import decode_cursor, encode_cursor
from app.customers import service as customer_service
from app.interactions import repository as repo
from app.interactions.schemas import InteractionCreate, InteractionUpdate, check_kind_fields
from app.segments import service as segment_service
from app.tasks import service as task_service

NOT_FOUND = ("Interaction not found.", "沟通记录不存在。")
# Free text stays out of the audit log (it may hold personal data that erasure must reach).
FREE_TEXT = ("summary", "commitment")


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def to_public(row: dict[str, Any], principal: Principal, code: str | None = None) -> dict[str, Any]:
    next_action = None
    if row.get("task_id") is not None:
        next_action = {
            "task_id": row["task_id"],
            "title": row["task_title"],
            "assignee_id": row["task_assignee_id"],
            "due_at": row["task_due_at"],
            "status": row["task_status"],
        }
    return {
        "id": row["id"],
        "customer_code": code or row["customer_code"],
        "occurred_at": row["occurred_at"],
        "channel": row["channel"],
        "kind": row["kind"],
        "direction": row["direction"],
        "summary": row["summary"],
        "sentiment": row["sentiment"],
        "commitment": row["commitment"],
        "staff_id": row["staff_id"],
        "amount": _money(row["amount"]) if principal.sees_contract_amount else None,
        "products": row["products"],
        "resolved": row["resolved"],
        "next_action": next_action,
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "created_by": row["created_by"],
    }


def _audit_view(values: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {}
    for key, value in values.items():
        if key in FREE_TEXT:
            view[key] = None if value is None else "(text)"
        elif isinstance(value, datetime):
            view[key] = value.isoformat()
        elif isinstance(value, Decimal):
            view[key] = _money(value)
        else:
            view[key] = value
    return view


async def _locked_customer(session: Writer, principal: Principal, code: str) -> tuple[int, str]:
    locked = await repo.lock_writable_customer(session, principal, code)
    if locked is None:
        # Not writable: 404 when hidden, 403 when visible (a pool customer: claim it first).
        await customer_service.require_writable(session, principal, code)
        raise NotFound(*customer_service.NOT_FOUND)  # changed between the two statements
    return locked


async def create(
    session: Writer,
    principal: Principal,
    data: InteractionCreate,
    *,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    if idempotency_key:
        replayed = await idempotency.replay_or_reserve(
            session,
            principal.subject,
            idempotency_key,
            "interactions.create",
            data.model_dump(mode="json", exclude_unset=True),
        )
        if replayed is not None:
            return replayed
    created = await _create(session, principal, data)
    if idempotency_key:
        await idempotency.remember(session, principal.subject, idempotency_key, 201, created)
    return created


async def create_locked(
    session: Writer,
    principal: Principal,
    data: InteractionCreate,
    customer: tuple[int, str],
) -> dict[str, Any]:
    """Record an interaction for a customer (id, code) whose row the caller has already
    locked in this transaction and may write (webhook ingestion)."""
    return await _create(session, principal, data, customer)


async def _create(
    session: Writer,
    principal: Principal,
    data: InteractionCreate,
    locked: tuple[int, str] | None = None,
) -> dict[str, Any]:
    customer_id, code = locked or await _locked_customer(session, principal, data.customer_code)
    staff_id = data.staff_id if data.staff_id is not None else principal.user_id
    if staff_id is not None and staff_id != principal.user_id:
        await task_service.require_staff(session, staff_id, "staff_id")
    action = data.next_action
    assignee = None
    if action is not None:
        assignee = task_service.default_assignee(
            principal, action.assignee_id, "next_action.assignee_id"
        )
        if assignee != principal.user_id:
            await task_service.check_assignee(
                session, assignee, customer_id, "next_action.assignee_id"
            )
    occurred_at = data.occurred_at or datetime.now(UTC).replace(second=0, microsecond=0)
    row = await repo.insert(
        session,
        {
            "customer_id": customer_id,
            "occurred_at": occurred_at,
            "channel": data.channel,
            "kind": data.kind,
            "direction": data.direction,
            "summary": data.summary,
            "sentiment": data.sentiment,
            "commitment": data.commitment,
            "staff_id": staff_id,
            "amount": data.amount,
            "products": data.products,
            "resolved": data.resolved,
            "actor": principal.subject,
            "with_task": action is not None,
            "task_title": action.title if action else None,
            "task_note": action.note if action else None,
            "task_assignee_id": assignee,
            "task_due_at": action.due_at if action else None,
        },
    )
    if data.kind == "purchase":
        day = occurred_at.astimezone(ZoneInfo(get_settings().timezone)).date()
        await customer_service.note_deal(session, principal, customer_id, day)
    await segment_service.recompute_customer(session, customer_id, cause="interaction")
    recorded = _audit_view(
        {
            "customer_code": code,
            **data.model_dump(exclude={"customer_code", "next_action"}, exclude_none=True),
            "occurred_at": occurred_at,
            "staff_id": staff_id,
            "next_action_task_id": row["task_id"],
        }
    )
    await audit.record(
        session,
        actor=principal,
        action="interaction.create",
        entity_type="interaction",
        entity_id=row["id"],
        changes=audit.diff({}, recorded),
    )
    return to_public(row, principal, code)


async def get(session: Reader, principal: Principal, interaction_id: int) -> dict[str, Any]:
    row = await repo.get(session, principal, interaction_id)
    if row is None:
        raise NotFound(*NOT_FOUND)
    return to_public(row, principal)


async def update(
    session: AsyncSession,
    principal: Principal,
    interaction_id: int,
    data: InteractionUpdate,
    *,
    if_match: int | None,
) -> dict[str, Any]:
    before = await repo.lock_for_update(session, principal, interaction_id)
    if before is None:
        visible = await repo.get(session, principal, interaction_id)
        if visible is None:
            raise NotFound(*NOT_FOUND)
        # Visible but its customer is not writable: the same answer as writing the customer.
        await customer_service.require_writable(session, principal, visible["customer_code"])
        raise NotFound(*NOT_FOUND)
    if if_match is not None and before["version"] != if_match:
        raise PreconditionFailed(extra={"current_version": before["version"]})
    patch = data.model_dump(exclude_unset=True)
    for key in ("occurred_at", "channel", "kind", "direction"):
        if key in patch and patch[key] is None:
            raise ValidationFailed(errors=[field_error(key, "cannot be empty", "missing")])
    if "products" in patch and patch["products"] is None:
        patch["products"] = []
    if patch.get("kind", before["kind"]) != before["kind"]:
        # A new kind drops the fields of the old one unless they are sent again.
        if patch["kind"] != "purchase":
            patch.setdefault("amount", None)
            patch.setdefault("products", [])
        if patch["kind"] != "complaint":
            patch.setdefault("resolved", None)
    after = {**before, **patch}
    if after["kind"] == "complaint" and after["resolved"] is None:
        after["resolved"] = patch["resolved"] = False
    try:
        check_kind_fields(after["kind"], after["amount"], after["products"], after["resolved"])
    except ValueError as exc:
        raise ValidationFailed(errors=[field_error("kind", str(exc))]) from None
    if patch.get("staff_id") is not None and patch["staff_id"] != before["staff_id"]:
        await task_service.require_staff(session, patch["staff_id"], "staff_id")
    changed = {k: v for k, v in patch.items() if before[k] != v}
    if not changed:
        return await get(session, principal, interaction_id)
    await repo.update_interaction(
        session, interaction_id, {**changed, "updated_by": principal.subject}
    )
    await segment_service.recompute_customer(session, before["customer_id"], cause="interaction")
    await audit.record(
        session,
        actor=principal,
        action="interaction.update",
        entity_type="interaction",
        entity_id=interaction_id,
        changes=audit.diff(_audit_view({k: before[k] for k in changed}), _audit_view(changed)),
    )
    return await get(session, principal, interaction_id)


def _keyset(cursor: str | None, arity: int) -> list[Any] | None:
    raw = decode_cursor(cursor, arity)
    if raw is None:
        return None
    try:
        return [datetime.fromisoformat(str(raw[0])), *raw[1:-1], int(raw[-1])]
    except (TypeError, ValueError):
        raise ValidationFailed(errors=[field_error("cursor", "Invalid cursor.")]) from None


async def list_interactions(
    session: AsyncSession,
    principal: Principal,
    *,
    customer_code: str | None,
    channel: list[str],
    kind: list[str],
    direction: str | None,
    sentiment: list[str],
    staff: str | None,
    occurred_from: datetime | None,
    occurred_to: datetime | None,
    resolved: bool | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    customer_id = None
    if customer_code is not None:
        customer_id = await customer_service.require_visible(session, principal, customer_code)
    after = _keyset(cursor, 2)
    stmt = repo.list_statement(
        principal,
        customer_id=customer_id,
        channel=channel,
        kind=kind,
        direction=direction,
        sentiment=sentiment,
        staff_id=task_service.user_filter(principal, staff, "staff"),
        occurred_from=occurred_from,
        occurred_to=occurred_to,
        resolved=resolved,
        after=(after[0], after[1]) if after else None,
        limit=limit + 1,
    )
    rows = (await session.execute(stmt)).mappings().all()
    items = [to_public(dict(r), principal) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([last["occurred_at"].isoformat(), last["id"]])
    return {"items": items, "next_cursor": next_cursor}


# ---- timeline --------------------------------------------------------------------------------


def _timeline_entry(row: dict[str, Any], principal: Principal) -> dict[str, Any]:
    data = dict(row["data"])
    if row["type"] == "tier_change":
        data = segment_service.redact_change(data, principal)
    elif row["type"] == "edit" and not principal.sees_contract_amount:
        data["changes"] = {
            k: v for k, v in (data.get("changes") or {}).items() if k != "contract_amount"
        }
    return {"at": row["at"], "type": row["type"], "id": row["id"], "data": data}


async def timeline(
    session: AsyncSession, principal: Principal, code: str, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    customer_id = await customer_service.require_visible(session, principal, code)
    after = _keyset(cursor, 3)
    rows = await repo.timeline(
        session,
        customer_id=customer_id,
        code=code,
        amounts=principal.sees_contract_amount,
        after=(after[0], str(after[1]), after[2]) if after else None,
        limit=limit + 1,
    )
    items = [_timeline_entry(r, principal) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([last["at"].isoformat(), last["type"], last["id"]])
    return {"items": items, "next_cursor": next_cursor}
