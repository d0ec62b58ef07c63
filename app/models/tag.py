"""Tags: categories (admin-extensible), tags unique per category, and their customers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import CITEXT
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.base import Timestamped


class TagCategory(Timestamped, Base):
    __tablename__ = "tag_categories"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    label: Mapped[str] = mapped_column(String(60), nullable=False)
    builtin: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")


class Tag(Timestamped, Base):
    __tablename__ = "tags"
    # citext: "VIP" and "vip" are one tag within a category, and filters by name ignore case.
    __table_args__ = (UniqueConstraint("category_id", "name", name="uq_tags_category_id_name"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("tag_categories.id"), nullable=False)
    name: Mapped[str] = mapped_column(CITEXT, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(80))
    updated_by: Mapped[str | None] = mapped_column(String(80))


class CustomerTag(Base):
    """One tag on one customer; the primary key makes assigning idempotent."""

    __tablename__ = "customer_tags"
    __table_args__ = (Index("ix_customer_tags_tag_id", "tag_id", "customer_id"),)

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    created_by: Mapped[str | None] = mapped_column(String(80))
