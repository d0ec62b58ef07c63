"""The purchases, in (customer, time) order with every column the sweep's purchase scan reads,
so that scan (app.prediction.repository: the churn model's histories and the RFM totals) reads
this small index alone and streams one customer at a time, instead of reading every
interaction's table page and hashing the purchases by customer and day.

A partial index: only purchases (about an eighth of the interactions) pay for it on insert.

Revision ID: 0011_purchases_index
Revises: 0010_sweep_fast
Create Date: 2026-12-01 00:40
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_purchases_index"
down_revision: str | None = "0010_sweep_fast"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_interactions_purchases ON interactions (customer_id, occurred_at) "
        "INCLUDE (updated_at, amount) WHERE kind = 'purchase'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_interactions_purchases")
