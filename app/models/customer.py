"""The customer aggregate: the record, its code counters, custom fields, source channels."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, CITEXT, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.base import Timestamped


class Customer(Timestamped, Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(12), nullable=False, server_default="enterprise")
    name: Mapped[str] = mapped_column(Text, nullable=False)
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default="[]"
    )
    phone: Mapped[str | None] = mapped_column(String(20))
    # A phone as written in a legacy sheet when it does not parse (flagged to_verify).
    raw_phone: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(CITEXT)
    industry: Mapped[str | None] = mapped_column(String(2))
    province: Mapped[str | None] = mapped_column(String(40))
    city: Mapped[str | None] = mapped_column(String(40))
    address: Mapped[str | None] = mapped_column(Text)
    employee_band: Mapped[str | None] = mapped_column(String(20))
    revenue_band: Mapped[str | None] = mapped_column(String(20))
    gender: Mapped[str | None] = mapped_column(String(10))
    age_band: Mapped[str | None] = mapped_column(String(10))
    occupation: Mapped[str | None] = mapped_column(String(60))
    price_sensitivity: Mapped[str | None] = mapped_column(String(10))
    consumption_habits: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(ForeignKey("source_channels.code"))
    referrer: Mapped[str | None] = mapped_column(String(100))
    first_contact_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    core_needs: Mapped[str | None] = mapped_column(Text)
    need_tags: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    budget: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    need_priority: Mapped[str | None] = mapped_column(String(30))
    decision_makers: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Maintained by a trigger whenever owner_id changes; the pool release counts from it too.
    owner_assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_follow_up_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_follow_up_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lifecycle: Mapped[str] = mapped_column(String(12), nullable=False, server_default="potential")
    lifecycle_baseline: Mapped[str | None] = mapped_column(String(12))
    value_tier: Mapped[str] = mapped_column(String(12), nullable=False, server_default="normal")
    activity: Mapped[str] = mapped_column(String(10), nullable=False, server_default="active")
    rfm_r: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_f: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_m: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_segment: Mapped[str | None] = mapped_column(String(20), server_default="no_purchase")
    cooperation_status: Mapped[str] = mapped_column(
        String(12), nullable=False, server_default="not_started"
    )
    first_cooperation_date: Mapped[date | None] = mapped_column(Date)
    last_cooperation_date: Mapped[date | None] = mapped_column(Date)
    products: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    contract_amount: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    flags: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    custom: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    # Name, contact names, their pinyin and initials, code, phone digits, email: one trigram field.
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    # Company/person name without legal suffixes, punctuation or width differences (identity).
    name_key: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    external_ids: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    # Sensitive fields: AES-GCM ciphertext plus a keyed HMAC for exact search (app.privacy).
    id_number_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    id_number_bidx: Mapped[str | None] = mapped_column(String(64))
    bank_account_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    bank_account_bidx: Mapped[str | None] = mapped_column(String(64))
    pii_key_id: Mapped[str | None] = mapped_column(String(20))
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erasure_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    created_by: Mapped[str | None] = mapped_column(String(80))
    updated_by: Mapped[str | None] = mapped_column(String(80))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_by: Mapped[str | None] = mapped_column(String(80))


class CustomerCodeCounter(Base):
    """Per-day sequence; the row lock makes codes gap-free and unique across processes."""

    __tablename__ = "customer_code_counters"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    last_value: Mapped[int] = mapped_column(Integer, nullable=False)


class SourceChannel(Base):
    __tablename__ = "source_channels"

    code: Mapped[str] = mapped_column(String(30), primary_key=True)
    label: Mapped[str] = mapped_column(String(60), nullable=False)
    aliases: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    builtin: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")


class CustomField(Timestamped, Base):
    __tablename__ = "custom_fields"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    label: Mapped[str] = mapped_column(String(60), nullable=False)
    type: Mapped[str] = mapped_column(String(10), nullable=False)
    options: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    required: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    principal: Mapped[str] = mapped_column(String(80), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Consent(Base):
    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), nullable=False)
    purpose: Mapped[str] = mapped_column(String(30), nullable=False)
    scope: Mapped[str | None] = mapped_column(Text)
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    channel: Mapped[str] = mapped_column(String(30), nullable=False)
    evidence: Mapped[str | None] = mapped_column(Text)
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    withdrawal_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(80), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
