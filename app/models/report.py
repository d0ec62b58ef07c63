"""Report inputs: what each acquisition channel cost per month (entered by an admin)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Date, DateTime, ForeignKey, Numeric, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


class ChannelCost(Base):
    __tablename__ = "channel_costs"

    channel: Mapped[str] = mapped_column(ForeignKey("source_channels.code"), primary_key=True)
    # The first day of the month.
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(16, 2), nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    updated_by: Mapped[str | None] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
