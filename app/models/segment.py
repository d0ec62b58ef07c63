"""Segmentation: versioned rules, the record of every class change, and sweep runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


class SegmentRuleSet(Base):
    """One version of the thresholds; the highest version is in force. Rows are never changed."""

    __tablename__ = "segment_rules"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rules: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_by: Mapped[str] = mapped_column(String(80), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class TierChange(Base):
    """A customer moving from one class to another in one dimension (or the pool: `owner`)."""

    __tablename__ = "tier_changes"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # No foreign key: an append-only log written with the customer row it names locked, and
    # customers are never deleted (revision 0012 says why the per-row check had to go).
    customer_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    changed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    dimension: Mapped[str] = mapped_column(String(20), nullable=False)
    old_class: Mapped[str | None] = mapped_column(String(30))
    new_class: Mapped[str | None] = mapped_column(String(30))
    reason: Mapped[str] = mapped_column(String(40), nullable=False)
    detail: Mapped[str | None] = mapped_column(Text)
    cause: Mapped[str] = mapped_column(String(20), nullable=False)
    rule_version: Mapped[int | None] = mapped_column(Integer)


class SegmentSweep(Base):
    __tablename__ = "segment_sweeps"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    cause: Mapped[str] = mapped_column(String(20), nullable=False)
    rule_version: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    customers_changed: Mapped[int] = mapped_column(Integer, nullable=False)
    tier_changes: Mapped[int] = mapped_column(Integer, nullable=False)
    rfm_changed: Mapped[int] = mapped_column(Integer, nullable=False)
    released: Mapped[int] = mapped_column(Integer, nullable=False)
