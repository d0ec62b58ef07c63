"""PIPL: consents, audited reveals, data-subject export, erasure, retention, key rotation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.principal import Principal
from app.core.errors import Conflict, NotFound
from app.customers import repository as customers_repo
from app.customers import service as customers
from app.models.customer import Consent, Customer
from app.privacy import sensitive
from app.privacy.schemas import ConsentCreate, ConsentRead

C = Customer.__table__.c

# Free text in other features' tables that can hold personal data, scrubbed by an erasure.
# Entries for tables or columns not in this database are skipped.
SCRUB: list[tuple[str, str, str]] = [
    ("interactions", "summary", "'[已擦除]'"),
    ("interactions", "commitment", "NULL"),
    ("tasks", "title", "'[已擦除]'"),
    ("tasks", "note", "NULL"),
    ("webhook_inbox", "payload", "'{}'::jsonb"),
]


def _consent(c: Consent) -> ConsentRead:
    return ConsentRead(
        id=c.id,
        purpose=c.purpose,
        scope=c.scope,
        granted_at=c.granted_at,
        channel=c.channel,
        evidence=c.evidence,
        withdrawn_at=c.withdrawn_at,
        withdrawal_reason=c.withdrawal_reason,
        created_by=c.created_by,
        active=c.withdrawn_at is None,
    )


async def list_consents(
    session: AsyncSession, principal: Principal, code: str
) -> list[ConsentRead]:
    customer_id = await customers.require_visible(session, principal, code)
    rows = await session.scalars(
        select(Consent).where(Consent.customer_id == customer_id).order_by(Consent.id)
    )
    return [_consent(c) for c in rows.all()]


async def add_consent(
    session: AsyncSession, principal: Principal, code: str, data: ConsentCreate
) -> ConsentRead:
    customer_id = await customers.require_writable(session, principal, code)
    consent = Consent(
        customer_id=customer_id,
        purpose=data.purpose,
        scope=data.scope,
        granted_at=data.granted_at or datetime.now(UTC),
        channel=data.channel,
        evidence=data.evidence,
        created_by=principal.subject,
    )
    session.add(consent)
    if data.purpose == "marketing":
        await session.execute(
            update(Customer)
            .where(C.id == customer_id)
            .values(flags=func.array_remove(C.flags, "no_marketing"))
        )
    await session.flush()
    await session.refresh(consent)
    await audit.record(
        session,
        actor=principal,
        action="consent.grant",
        entity_type="customer",
        entity_id=code,
        changes={"purpose": data.purpose, "channel": data.channel, "consent_id": consent.id},
    )
    return _consent(consent)


async def withdraw_consent(
    session: AsyncSession, principal: Principal, code: str, consent_id: int, reason: str | None
) -> ConsentRead:
    customer_id = await customers.require_writable(session, principal, code)
    consent = await session.scalar(
        select(Consent)
        .where(Consent.id == consent_id, Consent.customer_id == customer_id)
        .with_for_update()
    )
    if consent is None:
        raise NotFound("No such consent.", "同意记录不存在。")
    if consent.withdrawn_at is not None:
        raise Conflict("This consent was already withdrawn.", "该同意已撤回。")
    consent.withdrawn_at = datetime.now(UTC)
    consent.withdrawal_reason = reason
    effects: list[str] = []
    still = await _active_after(session, customer_id, consent.purpose, consent.id)
    if not still:
        # Withdrawal stops processing for the purpose (PIPL art. 15).
        if consent.purpose == "marketing":
            await session.execute(
                update(Customer)
                .where(C.id == customer_id, ~C.flags.contains(["no_marketing"]))
                .values(flags=func.array_append(C.flags, "no_marketing"))
            )
            effects.append("excluded from marketing")
        if consent.purpose == "sensitive_data":
            await session.execute(
                update(Customer)
                .where(C.id == customer_id)
                .values(
                    id_number_enc=None,
                    id_number_bidx=None,
                    bank_account_enc=None,
                    bank_account_bidx=None,
                    version=C.version + 1,
                )
            )
            effects.append("sensitive fields deleted")
    await session.flush()
    await audit.record(
        session,
        actor=principal,
        action="consent.withdraw",
        entity_type="customer",
        entity_id=code,
        changes={"purpose": consent.purpose, "consent_id": consent.id, "effects": effects},
    )
    return _consent(consent)


async def _active_after(
    session: AsyncSession, customer_id: int, purpose: str, excluding: int
) -> bool:
    found = await session.scalar(
        select(Consent.id).where(
            Consent.customer_id == customer_id,
            Consent.purpose == purpose,
            Consent.withdrawn_at.is_(None),
            Consent.id != excluding,
        )
    )
    return found is not None


async def _full_row(session: AsyncSession, principal: Principal, code: str) -> dict[str, Any]:
    row = (
        (
            await session.execute(
                select(*customers_repo.READ_COLUMNS, C.external_ids).where(
                    C.code == code, customers_repo.readable(principal)
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise await customers.not_found_or_moved(session, principal, code)
    return dict(row)


async def reveal(
    session: AsyncSession, principal: Principal, code: str, fields: list[str]
) -> dict[str, str | None]:
    row = await _full_row(session, principal, code)
    values = {f: sensitive.decrypt_field(row, f) for f in fields}
    await audit.record(
        session,
        actor=principal,
        action="pii.reveal",
        entity_type="customer",
        entity_id=code,
        changes={"fields": sorted(fields)},
    )
    return values


async def _customer_tables(session: AsyncSession) -> list[str]:
    rows = await session.execute(
        text(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND column_name = 'customer_id' "
            "ORDER BY table_name"
        )
    )
    return [r[0] for r in rows]


async def export_subject(session: AsyncSession, principal: Principal, code: str) -> dict[str, Any]:
    """Everything held about one customer, as one JSON document (PIPL art. 45)."""
    row = await _full_row(session, principal, code)
    record = customers.to_public(row, principal)
    for field in sensitive.SENSITIVE_FIELDS:
        record[field] = sensitive.decrypt_field(row, field)
    record["external_ids"] = row.get("external_ids") or {}
    related: dict[str, Any] = {}
    for table in await _customer_tables(session):
        result = await session.execute(
            text(
                f"SELECT coalesce(json_agg(to_jsonb(t) ORDER BY 1), '[]'::json) "  # noqa: S608
                f'FROM "{table}" t WHERE customer_id = :id'
            ),
            {"id": row["id"]},
        )
        related[table] = result.scalar_one()
    aliases = list((await session.scalars(select(C.code).where(C.merged_into == row["id"]))).all())
    history = await session.execute(
        text(
            "SELECT at, actor, action, changes FROM audit_log "
            "WHERE entity_type = 'customer' AND entity_id = ANY(:codes) ORDER BY id"
        ),
        {"codes": [code, *aliases]},
    )
    await audit.record(
        session,
        actor=principal,
        action="customer.subject_export",
        entity_type="customer",
        entity_id=code,
    )
    return {
        "generated_at": datetime.now(UTC),
        "customer": record,
        "merged_codes": aliases,
        "related": related,
        "history": [dict(r._mapping) for r in history],
    }


async def _has_column(session: AsyncSession, table: str, column: str) -> bool:
    return bool(
        await session.scalar(
            text(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = :t AND column_name = :c)"
            ),
            {"t": table, "c": column},
        )
    )


async def erase(session: AsyncSession, principal: Principal, code: str) -> dict[str, Any]:
    """Remove personal data everywhere; keep amounts, dates, tiers and the (PII-free) audit."""
    row = await _full_row(session, principal, code)
    customer_id = row["id"]
    custom = {k: v for k, v in (row["custom"] or {}).items() if isinstance(v, bool | int | float)}
    placeholder = f"已擦除客户 {code}"
    now = datetime.now(UTC)
    await session.execute(
        update(Customer)
        .where(C.id == customer_id)
        .values(
            name=placeholder,
            contacts=[],
            phone=None,
            raw_phone=None,
            email=None,
            address=None,
            occupation=None,
            consumption_habits=None,
            referrer=None,
            core_needs=None,
            decision_makers=None,
            custom=custom,
            external_ids={},
            id_number_enc=None,
            id_number_bidx=None,
            bank_account_enc=None,
            bank_account_bidx=None,
            search_text=code.lower(),
            name_key="",
            flags=func.array_remove(C.flags, "erasure_due"),
            erased_at=now,
            erasure_due_at=None,
            version=C.version + 1,
            updated_at=func.now(),
            updated_by=principal.subject,
        )
    )
    scrubbed: dict[str, int] = {}
    for table, column, replacement in SCRUB:
        if not await _has_column(session, table, column):
            continue
        key = "customer_id"
        if not await _has_column(session, table, key):
            continue
        result = await session.execute(
            text(
                f'UPDATE "{table}" SET "{column}" = {replacement} '  # noqa: S608
                f"WHERE customer_id = :id"
            ),
            {"id": customer_id},
        )
        scrubbed[f"{table}.{column}"] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    # Import error reports are keyed by file row, not customer: clear the cells that hold one of
    # this customer's identifiers.
    identifiers = _identifiers(row)
    if identifiers:
        result = await session.execute(
            text("UPDATE import_errors SET value = NULL WHERE value = ANY(:v)"),
            {"v": identifiers},
        )
        scrubbed["import_errors.value"] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    await audit.record(
        session,
        actor=principal,
        action="customer.erase",
        entity_type="customer",
        entity_id=code,
        changes={"scrubbed": scrubbed},
    )
    return {"code": code, "erased_at": now, "scrubbed": scrubbed}


def _identifiers(row: dict[str, Any]) -> list[str]:
    """Strings that identify the customer as a sheet would hold them (phones in usual forms)."""
    from app.customers.normalize import phone_search_digits

    values: set[str] = set()
    phones = [row.get("phone"), row.get("raw_phone")]
    for contact in row.get("contacts") or []:
        phones.extend(contact.get("phones") or [])
        values.update(v for v in (contact.get("name"), contact.get("email")) if v)
    for phone in phones:
        if phone:
            digits = phone_search_digits(phone)
            values.update({phone, digits, "+86" + digits, "0" + digits})
    values.update(v for v in (row.get("email"), row.get("name")) if v)
    return sorted(values)


async def flag_due_for_erasure(
    session: AsyncSession, retention_days: int, *, among: list[int] | None = None
) -> int:
    """Set-based: churned customers quiet past the retention period and holding no active
    consent are flagged `erasure_due` (an admin then erases them). `among` (the sweep's
    candidates, by primary key) limits the look to those customers instead of all."""
    if among is not None and not among:
        return 0
    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    scope = "" if among is None else "AND c.id = ANY(CAST(:among AS bigint[]))"
    result = await session.execute(
        text(
            f"""
            UPDATE customers c
               SET flags = array_append(c.flags, 'erasure_due'), erasure_due_at = now()
             WHERE c.deleted_at IS NULL AND c.erased_at IS NULL {scope}
               AND NOT c.flags @> ARRAY['erasure_due']
               AND c.lifecycle = 'churned'
               AND coalesce(c.last_follow_up_at, c.updated_at) < :cutoff
               AND NOT EXISTS (SELECT 1 FROM consents k
                                WHERE k.customer_id = c.id AND k.withdrawn_at IS NULL)
            """  # noqa: S608 (a constant fragment, no input)
        ),
        {"cutoff": cutoff} if among is None else {"cutoff": cutoff, "among": among},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def rotate_keys(session: AsyncSession, batch: int = 1000) -> int:
    """Re-encrypt every sensitive value under the active key; returns rows rewritten."""
    from app.privacy import crypto

    active = crypto.key_ring().active
    total = 0
    while True:
        rows = (
            (
                await session.execute(
                    select(C.id, C.id_number_enc, C.bank_account_enc, C.pii_key_id)
                    .where(C.pii_key_id.is_not(None), C.pii_key_id != active)
                    .order_by(C.id)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            return total
        for r in rows:
            values: dict[str, Any] = {"pii_key_id": active}
            for field in sensitive.SENSITIVE_FIELDS:
                plain = sensitive.decrypt_field(dict(r), field)
                if plain is not None:
                    values.update(sensitive.columns_for(field, plain, r["id"]))
            values["pii_key_id"] = active
            await session.execute(update(Customer).where(C.id == r["id"]).values(**values))
        total += len(rows)


def dumps(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, default=str)
