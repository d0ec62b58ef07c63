"""Privacy: encrypted sensitive fields with blind indexes, consents, erasure bookkeeping.

Revision ID: 0007_privacy
Revises: 0006_identity
Create Date: 2026-11-23 09:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007_privacy"
down_revision: str | None = "0006_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for col in ("id_number", "bank_account"):
        op.add_column("customers", sa.Column(f"{col}_enc", sa.LargeBinary))
        op.add_column("customers", sa.Column(f"{col}_bidx", sa.String(64)))
        op.create_index(f"ix_customers_{col}_bidx", "customers", [f"{col}_bidx"])
    op.add_column("customers", sa.Column("pii_key_id", sa.String(20)))
    op.add_column("customers", sa.Column("erased_at", sa.DateTime(timezone=True)))
    op.add_column("customers", sa.Column("erasure_due_at", sa.DateTime(timezone=True)))

    op.create_table(
        "consents",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("customer_id", sa.BigInteger, nullable=False),
        sa.Column("purpose", sa.String(30), nullable=False),
        sa.Column("scope", sa.Text),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(30), nullable=False),
        sa.Column("evidence", sa.Text),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True)),
        sa.Column("withdrawal_reason", sa.Text),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_consents"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_consents_customer_id_customers"
        ),
        sa.CheckConstraint(
            "purpose IN ('marketing','sensitive_data','data_sharing','profiling','service')",
            name="purpose",
        ),
    )
    op.create_index("ix_consents_customer", "consents", ["customer_id", "purpose"])


def downgrade() -> None:
    op.drop_table("consents")
    for col in ("erasure_due_at", "erased_at", "pii_key_id"):
        op.drop_column("customers", col)
    for col in ("id_number", "bank_account"):
        op.drop_index(f"ix_customers_{col}_bidx", "customers")
        op.drop_column("customers", f"{col}_bidx")
        op.drop_column("customers", f"{col}_enc")
