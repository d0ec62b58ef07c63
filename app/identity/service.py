"""Identity resolution, duplicate candidates, merge and undo (SPEC §8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.principal import Principal
from app.core.db import Writer
from app.core.errors import Conflict, NotFound, ValidationFailed, field_error
from app.core.pagination import decode_cursor, encode_cursor
from app.customers import repository as customers_repo
from app.customers import service as customers
from app.identity import repository as repo
from app.models.customer import Customer
from app.models.identity import CustomerMerge, DuplicateCandidate
from app.segments import service as segments

C = Customer.__table__.c

# Scalar fields a merge fills on the survivor when the survivor's own value is empty.
FILL_FIELDS = (
    "phone", "email", "industry", "province", "city", "address", "employee_band", "revenue_band",
    "gender", "age_band", "occupation", "price_sensitivity", "consumption_habits", "source",
    "referrer", "core_needs", "budget", "need_priority", "decision_makers", "owner_id",
    "next_follow_up_at", "contract_amount",
)  # fmt: skip
LIST_FIELDS = ("need_tags", "products", "flags")


async def resolve(
    session: Writer,
    *,
    phones: list[str] = (),  # type: ignore[assignment]
    emails: list[str] = (),  # type: ignore[assignment]
    wechat_ids: list[str] = (),  # type: ignore[assignment]
    external_ids: dict[str, str] | None = None,
) -> int | None:
    """The existing customer this incoming identity belongs to, matched exactly; else None."""
    return await repo.find_exact(
        session,
        phones=[p for p in phones if p],
        emails=[e.lower() for e in emails if e],
        wechat_ids=[w for w in wechat_ids if w],
        external_ids=external_ids or {},
    )


async def record_candidates_for(session: Writer, customer_id: int) -> None:
    await repo.record_candidates_for(session, customer_id)


async def scan(session: AsyncSession, *, full: bool = False, threshold: float = 0.6) -> int:
    """Fuzzy duplicate scan (trigram similarity of name keys), set-based."""
    since = datetime(1970, 1, 1, tzinfo=UTC) if full else datetime.now(UTC) - timedelta(days=1)
    return await repo.scan(session, since, threshold)


async def list_candidates(
    session: AsyncSession, principal: Principal, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    after = decode_cursor(cursor, 2)
    rows = await repo.list_candidates(session, principal, after=after, limit=limit + 1)
    items = [
        {
            "id": r["id"],
            "score": float(r["score"]),
            "reason": r["reason"],
            "created_at": r["created_at"],
            "customers": [
                {"code": r["a_code"], "name": r["a_name"]},
                {"code": r["b_code"], "name": r["b_name"]},
            ],
        }
        for r in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([str(last["score"]), last["id"]])
    return {"items": items, "next_cursor": next_cursor}


async def dismiss(session: AsyncSession, principal: Principal, candidate_id: int) -> None:
    cand = await session.get(DuplicateCandidate, candidate_id)
    if cand is None or cand.status != "pending":
        raise NotFound("No pending duplicate candidate with this id.", "没有该待处理的重复候选。")
    for cid in (cand.customer_a, cand.customer_b):
        code = await session.scalar(select(C.code).where(C.id == cid))
        await customers.require_visible(session, principal, str(code))
    cand.status = "dismissed"
    cand.resolved_at = datetime.now(UTC)
    cand.resolved_by = principal.subject
    await session.flush()
    await audit.record(
        session,
        actor=principal,
        action="duplicate.dismiss",
        entity_type="duplicate_candidate",
        entity_id=candidate_id,
    )


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _merged_values(
    survivor: dict[str, Any], others: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The survivor's non-empty value wins; empty ones are filled from the merged records in the
    order given. Returns (changed columns, discarded conflicting values kept for the audit)."""
    patch: dict[str, Any] = {}
    discarded: dict[str, Any] = {}
    for field in FILL_FIELDS:
        current = survivor[field]
        for other in others:
            value = other[field]
            if _empty(value):
                continue
            if _empty(current):
                patch[field] = current = value
            elif value != current:
                discarded.setdefault(field, []).append({"code": other["code"], "value": value})
    for field in LIST_FIELDS:
        merged = list(survivor[field] or [])
        for other in others:
            merged.extend(v for v in other[field] or [] if v not in merged)
        if merged != list(survivor[field] or []):
            patch[field] = merged
    contacts = list(survivor["contacts"] or [])
    seen = {orjson.dumps(c, option=orjson.OPT_SORT_KEYS) for c in contacts}
    for other in others:
        for c in other["contacts"] or []:
            key = orjson.dumps(c, option=orjson.OPT_SORT_KEYS)
            if key not in seen:
                contacts.append(c)
                seen.add(key)
    if contacts != list(survivor["contacts"] or []):
        patch["contacts"] = contacts
    custom = dict(survivor["custom"] or {})
    external = dict(survivor.get("external_ids") or {})
    for other in others:
        for k, v in (other["custom"] or {}).items():
            if k not in custom:
                custom[k] = v
            elif custom[k] != v:
                discarded.setdefault(f"custom.{k}", []).append({"code": other["code"], "value": v})
        for k, v in (other.get("external_ids") or {}).items():
            external.setdefault(k, v)
    if custom != (survivor["custom"] or {}):
        patch["custom"] = custom
    if external != (survivor.get("external_ids") or {}):
        patch["external_ids"] = external
    for field, pick in (
        ("first_contact_at", min),
        ("last_follow_up_at", max),
        ("first_cooperation_date", min),
        ("last_cooperation_date", max),
    ):
        values = [r[field] for r in [survivor, *others] if r[field] is not None]
        if values and pick(values) != survivor[field]:
            patch[field] = pick(values)
    return patch, discarded


async def _lock_by_code(session: AsyncSession, principal: Principal, code: str) -> dict[str, Any]:
    await customers.require_writable(session, principal, code)
    row = (
        (
            await session.execute(
                select(*customers_repo.READ_COLUMNS, C.external_ids, C.search_text)
                .where(C.code == code, customers_repo.writable(principal))
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(*customers.NOT_FOUND)
    return dict(row)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(row, default=str))  # type: ignore[no-any-return]


async def merge(
    session: AsyncSession, principal: Principal, survivor_code: str, merged_codes: list[str]
) -> dict[str, Any]:
    if survivor_code in merged_codes or len(set(merged_codes)) != len(merged_codes):
        raise ValidationFailed(
            errors=[field_error("merged", "codes must be distinct and differ from the survivor")]
        )
    # Lock in code order so two overlapping merges cannot deadlock.
    locked = {
        code: await _lock_by_code(session, principal, code)
        for code in sorted([survivor_code, *merged_codes])
    }
    survivor = locked[survivor_code]
    others = [locked[c] for c in merged_codes]
    patch, discarded = _merged_values(survivor, others)
    merged_ids = [o["id"] for o in others]

    moved: dict[str, Any] = {}
    present = await repo.existing_tables(
        session, [t for t, _ in repo.MERGE_TABLES] + [t for t, _ in repo.MERGE_LINK_TABLES]
    )
    for table, pk in repo.MERGE_TABLES:
        if table not in present:
            continue
        rows = await session.execute(
            text(
                f"SELECT {pk}, customer_id FROM {table} "  # noqa: S608
                "WHERE customer_id = ANY(:m) FOR UPDATE"
            ),
            {"m": merged_ids},
        )
        by_origin: dict[str, list[Any]] = {}
        for pk_value, origin in rows:
            by_origin.setdefault(str(origin), []).append(pk_value)
        if by_origin:
            await session.execute(
                text(f"UPDATE {table} SET customer_id = :s WHERE customer_id = ANY(:m)"),  # noqa: S608
                {"s": survivor["id"], "m": merged_ids},
            )
            moved[table] = by_origin
    for table, other_col in repo.MERGE_LINK_TABLES:
        if table not in present:
            continue
        rows = await session.execute(
            text(
                f"INSERT INTO {table} (customer_id, {other_col}) "  # noqa: S608
                f"SELECT DISTINCT CAST(:s AS bigint), {other_col} FROM {table} "
                f"WHERE customer_id = ANY(:m) "
                f"ON CONFLICT DO NOTHING RETURNING {other_col}"
            ),
            {"s": survivor["id"], "m": merged_ids},
        )
        added = [r[0] for r in rows]
        if added:
            moved[table] = added

    if patch:
        after = {**survivor, **patch}
        patch["flags"] = customers.compute_flags(after, patch.get("flags", survivor["flags"]))
        patch["search_text"] = customers.record_search_text(after)
        patch["updated_by"] = principal.subject
        new_row = await customers_repo.update_customer(session, survivor["id"], patch)
    else:
        new_row = await customers_repo.update_customer(
            session, survivor["id"], {"updated_by": principal.subject}
        )
    await session.execute(
        update(Customer)
        .where(C.id.in_(merged_ids))
        .values(
            merged_into=survivor["id"],
            deleted_at=datetime.now(UTC),
            deleted_by=principal.subject,
            version=C.version + 1,
        )
    )
    await session.execute(
        update(DuplicateCandidate)
        .where(
            DuplicateCandidate.customer_a.in_([survivor["id"], *merged_ids]),
            DuplicateCandidate.customer_b.in_([survivor["id"], *merged_ids]),
            DuplicateCandidate.status == "pending",
        )
        .values(status="merged", resolved_at=datetime.now(UTC), resolved_by=principal.subject)
    )
    record = CustomerMerge(
        survivor_id=survivor["id"],
        merged_ids=merged_ids,
        survivor_before=_jsonable({k: v for k, v in survivor.items() if k != "search_text"}),
        moved=moved,
        actor=principal.subject,
    )
    session.add(record)
    await session.flush()
    await _recompute_tiers(session, survivor["id"])
    await audit.record(
        session,
        actor=principal,
        action="customer.merge",
        entity_type="customer",
        entity_id=survivor_code,
        changes={
            "merge_id": record.id,
            "merged": merged_codes,
            "fields": audit.diff(
                customers.audit_view(survivor), customers.audit_view({**survivor, **patch})
            ),
            "discarded": _mask_discarded(discarded),
            "moved": {
                t: sum(len(ids) for ids in v.values()) if isinstance(v, dict) else len(v)
                for t, v in moved.items()
            },
        },
    )
    fresh = await customers_repo.get(session, principal, survivor_code)
    result = customers.to_public(fresh or new_row, principal)
    result["merge_id"] = record.id
    return result


def _mask_discarded(discarded: dict[str, Any]) -> dict[str, Any]:
    from app.customers.normalize import mask_email, mask_phone

    out = {}
    for field, values in discarded.items():
        masker = {"phone": mask_phone, "email": mask_email}.get(field)
        out[field] = [
            {**v, "value": masker(v["value"]) if masker else _jsonable({"v": v["value"]})["v"]}
            for v in values
        ]
    return out


async def _recompute_tiers(session: AsyncSession, customer_id: int) -> None:
    """The survivor's classes follow its merged history at once."""
    await segments.recompute_customer(session, customer_id, cause="merge")


async def undo(session: AsyncSession, principal: Principal, merge_id: int) -> dict[str, Any]:
    record = await session.get(CustomerMerge, merge_id, with_for_update=True)
    if record is None:
        raise NotFound("No such merge.", "合并记录不存在。")
    if record.undone_at is not None:
        raise Conflict("This merge was already undone.", "该合并已撤销。")
    survivor_id = record.survivor_id
    moved = record.moved or {}
    for table, pk in repo.MERGE_TABLES:
        for origin, ids in (moved.get(table) or {}).items():
            # Each row goes back to the customer it came from.
            await session.execute(
                text(f"UPDATE {table} SET customer_id = :o WHERE {pk} = ANY(:ids)"),  # noqa: S608
                {"o": int(origin), "ids": ids},
            )
    for table, other_col in repo.MERGE_LINK_TABLES:
        added = moved.get(table)
        if added:
            await session.execute(
                text(
                    f"DELETE FROM {table} WHERE customer_id = :s "  # noqa: S608
                    f"AND {other_col} = ANY(:ids)"
                ),
                {"s": survivor_id, "ids": added},
            )
    before = record.survivor_before
    restore_cols = {
        k: v
        for k, v in before.items()
        if k in C and k not in {"id", "code", "version", "created_at", "updated_at"}
    }
    restore_cols = _typed(restore_cols)
    restore_cols["search_text"] = customers.record_search_text({**before, **restore_cols})
    restore_cols["updated_by"] = principal.subject
    row = await customers_repo.update_customer(session, survivor_id, restore_cols)
    await session.execute(
        update(Customer)
        .where(C.id.in_(record.merged_ids))
        .values(merged_into=None, deleted_at=None, deleted_by=None, version=C.version + 1)
    )
    record.undone_at = datetime.now(UTC)
    record.undone_by = principal.subject
    await session.flush()
    await _recompute_tiers(session, survivor_id)
    for merged_id in record.merged_ids:
        await _recompute_tiers(session, merged_id)
    codes = list((await session.scalars(select(C.code).where(C.id.in_(record.merged_ids)))).all())
    await audit.record(
        session,
        actor=principal,
        action="customer.merge_undo",
        entity_type="customer",
        entity_id=row["code"],
        changes={"merge_id": merge_id, "restored": codes},
    )
    fresh = await customers_repo.get(session, principal, row["code"])
    return customers.to_public(fresh or row, principal)


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    """JSON snapshot values back to column types (dates, timestamps, decimals)."""
    from datetime import date
    from decimal import Decimal

    from sqlalchemy import Date, DateTime, Numeric

    out: dict[str, Any] = {}
    for k, v in values.items():
        col_type = C[k].type
        if v is None:
            out[k] = None
        elif isinstance(col_type, DateTime):
            out[k] = datetime.fromisoformat(v)
        elif isinstance(col_type, Date):
            out[k] = date.fromisoformat(v)
        elif isinstance(col_type, Numeric):
            out[k] = Decimal(str(v))
        else:
            out[k] = v
    return out
