"""Identity resolution, duplicate candidates, merges and aliases; webhook sources and inbox.

Revision ID: 0006_identity
Revises: 0003_interactions
Create Date: 2026-11-23 08:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from alembic import op

revision: str = "0006_identity"
down_revision: str | None = "0003_interactions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, **kw: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    op.add_column("customers", sa.Column("name_key", sa.Text, nullable=False, server_default=""))
    op.add_column(
        "customers",
        sa.Column("external_ids", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.add_column("customers", sa.Column("merged_into", sa.BigInteger))
    op.create_foreign_key(
        "fk_customers_merged_into_customers", "customers", "customers", ["merged_into"], ["id"]
    )
    op.create_index("ix_customers_name_key", "customers", ["name_key"])
    op.execute(
        "CREATE INDEX ix_customers_name_key_trgm ON customers USING gin (name_key gin_trgm_ops)"
    )
    op.execute(
        "CREATE INDEX ix_customers_contacts ON customers USING gin (contacts jsonb_path_ops)"
    )
    op.execute(
        "CREATE INDEX ix_customers_external_ids ON customers USING gin (external_ids jsonb_path_ops)"
    )

    op.create_table(
        "duplicate_candidates",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("customer_a", sa.BigInteger, nullable=False),
        sa.Column("customer_b", sa.BigInteger, nullable=False),
        sa.Column("score", sa.Numeric(4, 3), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.String(12), nullable=False, server_default="pending"),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("resolved_at"),
        sa.Column("resolved_by", sa.String(80)),
        sa.PrimaryKeyConstraint("id", name="pk_duplicate_candidates"),
        sa.UniqueConstraint("customer_a", "customer_b", name="uq_duplicate_candidates_pair"),
        sa.ForeignKeyConstraint(
            ["customer_a"], ["customers.id"], name="fk_duplicate_candidates_customer_a_customers"
        ),
        sa.ForeignKeyConstraint(
            ["customer_b"], ["customers.id"], name="fk_duplicate_candidates_customer_b_customers"
        ),
        sa.CheckConstraint("customer_a < customer_b", name="ordered"),
        sa.CheckConstraint("status IN ('pending','dismissed','merged')", name="status"),
    )
    op.create_index(
        "ix_duplicate_candidates_pending",
        "duplicate_candidates",
        ["score"],
        postgresql_where=sa.text("status = 'pending'"),
    )

    op.create_table(
        "customer_merges",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("survivor_id", sa.BigInteger, nullable=False),
        sa.Column("merged_ids", pg.ARRAY(sa.BigInteger), nullable=False),
        # The survivor as it was, and which rows of which tables moved: enough to undo.
        sa.Column("survivor_before", pg.JSONB, nullable=False),
        sa.Column("moved", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("actor", sa.String(80), nullable=False),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("undone_at"),
        sa.Column("undone_by", sa.String(80)),
        sa.PrimaryKeyConstraint("id", name="pk_customer_merges"),
        sa.ForeignKeyConstraint(
            ["survivor_id"], ["customers.id"], name="fk_customer_merges_survivor_id_customers"
        ),
    )

    op.create_table(
        "webhook_sources",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("slug", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        # Secrets are needed in clear to compute HMACs; several allow rotation.
        sa.Column("secrets", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("mapping", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("source_channel", sa.String(30)),
        sa.Column("chat_mode", sa.String(20), nullable=False, server_default="conversation"),
        sa.Column("assignment", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("rr_cursor", sa.BigInteger, nullable=False, server_default="0"),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("updated_at", nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_sources"),
        sa.UniqueConstraint("slug", name="uq_webhook_sources_slug"),
        sa.CheckConstraint("kind IN ('form','chat')", name="kind"),
        sa.CheckConstraint("chat_mode IN ('conversation','message')", name="chat_mode"),
    )
    op.create_table(
        "webhook_inbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("source_id", sa.BigInteger, nullable=False),
        sa.Column("webhook_id", sa.String(200), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("payload", pg.JSONB, nullable=False),
        sa.Column("status", sa.String(12), nullable=False, server_default="received"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("customer_id", sa.BigInteger),
        _ts("processed_at"),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_inbox"),
        sa.UniqueConstraint("source_id", "webhook_id", name="uq_webhook_inbox_source_id"),
        sa.ForeignKeyConstraint(
            ["source_id"], ["webhook_sources.id"], name="fk_webhook_inbox_source_id_webhook_sources"
        ),
        sa.CheckConstraint("status IN ('received','processed','failed')", name="status"),
    )
    op.create_index(
        "ix_webhook_inbox_open",
        "webhook_inbox",
        ["status", "id"],
        postgresql_where=sa.text("status <> 'processed'"),
    )


def downgrade() -> None:
    op.drop_table("webhook_inbox")
    op.drop_table("webhook_sources")
    op.drop_table("customer_merges")
    op.drop_table("duplicate_candidates")
    op.drop_index("ix_customers_external_ids", "customers")
    op.drop_index("ix_customers_contacts", "customers")
    op.drop_index("ix_customers_name_key_trgm", "customers")
    op.drop_index("ix_customers_name_key", "customers")
    op.drop_constraint("fk_customers_merged_into_customers", "customers")
    op.drop_column("customers", "merged_into")
    op.drop_column("customers", "external_ids")
    op.drop_column("customers", "name_key")
