"""Saved segments: a named customer-list filter (stored as CustomerFilter JSON), shared or not."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, Identity, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import CITEXT, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.base import Timestamped


class SavedSegment(Timestamped, Base):
    __tablename__ = "saved_segments"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_saved_segments_owner_name"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(CITEXT, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    # Exactly what CustomerFilter.model_dump(mode="json", exclude_defaults=True) gives.
    filter: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    shared: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    # The principal's subject ("user:5", "service:2"): service accounts own segments too.
    owner: Mapped[str] = mapped_column(String(80), nullable=False)
    updated_by: Mapped[str | None] = mapped_column(String(80))
