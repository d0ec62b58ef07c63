"""Sensitive customer fields (ID number, bank account): encrypt, mask, consent gate."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailed, field_error
from app.models.customer import Consent
from app.privacy import crypto

SENSITIVE_FIELDS = ("id_number", "bank_account")
PURPOSE = "sensitive_data"


def _aad(field: str, customer_id: int) -> str:
    # Binding ciphertext to its row and field: a value copied elsewhere will not decrypt.
    return f"customers:{customer_id}:{field}"


def decrypt_field(row: dict[str, Any], field: str) -> str | None:
    blob = row.get(f"{field}_enc")
    if not blob or not row.get("pii_key_id"):
        return None
    return crypto.decrypt(bytes(blob), str(row["pii_key_id"]), aad=_aad(field, int(row["id"])))


def masked(row: dict[str, Any], field: str) -> str | None:
    if not row.get(f"{field}_enc"):
        return None
    try:
        return crypto.mask_identifier(decrypt_field(row, field))
    except Exception:
        return "****"


def columns_for(field: str, value: str | None, customer_id: int) -> dict[str, Any]:
    """Column values that store `value` (or clear it when None)."""
    if value is None:
        return {f"{field}_enc": None, f"{field}_bidx": None}
    blob, key_id = crypto.encrypt(value, aad=_aad(field, customer_id))
    return {
        f"{field}_enc": blob,
        f"{field}_bidx": crypto.blind_index(value, field=field),
        "pii_key_id": key_id,
    }


async def has_active_consent(session: AsyncSession, customer_id: int, purpose: str) -> bool:
    found = await session.scalar(
        select(Consent.id).where(
            Consent.customer_id == customer_id,
            Consent.purpose == purpose,
            Consent.withdrawn_at.is_(None),
        )
    )
    return found is not None


def reject_without_consent(fields: list[str]) -> ValidationFailed:
    return ValidationFailed(
        "Sensitive fields need a recorded sensitive_data consent for this customer.",
        "写入敏感信息前须先登记该客户的敏感个人信息处理同意（sensitive_data）。",
        errors=[
            field_error(f, "record a sensitive_data consent first", "consent_required")
            for f in fields
        ],
    )
