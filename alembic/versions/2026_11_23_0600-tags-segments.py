"""Tags and saved segments: tag categories (defaults seeded), tags, customer_tags, saved_segments.

Revision ID: 0004_tags_segments
Revises: 0007_privacy
Create Date: 2026-11-23 06:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from alembic import op

revision: str = "0004_tags_segments"
down_revision: str | None = "0007_privacy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_CATEGORIES = [
    ("need_type", "需求类型"),
    ("decision_stage", "决策阶段"),
    ("customer_trait", "客户特征"),
    ("campaign", "来源活动"),
]


def _ts(name: str, **kw: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    categories = op.create_table(
        "tag_categories",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("label", sa.String(60), nullable=False),
        sa.Column("builtin", sa.Boolean, nullable=False, server_default=sa.false()),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("updated_at", nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_tag_categories"),
        sa.UniqueConstraint("code", name="uq_tag_categories_code"),
    )
    op.bulk_insert(
        categories,
        [{"code": code, "label": label, "builtin": True} for code, label in DEFAULT_CATEGORIES],
    )

    op.create_table(
        "tags",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("category_id", sa.BigInteger, nullable=False),
        sa.Column("name", pg.CITEXT, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("created_by", sa.String(80)),
        sa.Column("updated_by", sa.String(80)),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("updated_at", nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_tags"),
        sa.ForeignKeyConstraint(
            ["category_id"], ["tag_categories.id"], name="fk_tags_category_id_tag_categories"
        ),
        # citext: unique per category whatever the case.
        sa.UniqueConstraint("category_id", "name", name="uq_tags_category_id_name"),
    )
    op.create_index("ix_tags_name", "tags", ["name"])

    op.create_table(
        "customer_tags",
        sa.Column("customer_id", sa.BigInteger, nullable=False),
        sa.Column("tag_id", sa.BigInteger, nullable=False),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        sa.Column("created_by", sa.String(80)),
        sa.PrimaryKeyConstraint("customer_id", "tag_id", name="pk_customer_tags"),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name="fk_customer_tags_customer_id_customers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tags.id"], name="fk_customer_tags_tag_id_tags", ondelete="CASCADE"
        ),
    )
    # The primary key serves "tags of a customer"; this one serves "customers with a tag".
    op.create_index("ix_customer_tags_tag_id", "customer_tags", ["tag_id", "customer_id"])

    op.create_table(
        "saved_segments",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("name", pg.CITEXT, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("filter", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("shared", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("updated_by", sa.String(80)),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("updated_at", nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_saved_segments"),
        sa.UniqueConstraint("owner", "name", name="uq_saved_segments_owner_name"),
    )


def downgrade() -> None:
    op.drop_table("saved_segments")
    op.drop_table("customer_tags")
    op.drop_table("tags")
    op.drop_table("tag_categories")
