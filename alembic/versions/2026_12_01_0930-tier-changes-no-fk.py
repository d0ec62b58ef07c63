"""The class-change log keeps its customer id without a foreign key.

`tier_changes` is an append-only history: every row is written in the transaction that just
updated (and so locked) the customer it names (an interaction's recompute, the sweep, a claim,
a merge moving rows to the survivor), and customers are never deleted, only marked deleted or
merged. The foreign key guarded nothing the service does, yet its check ran per inserted row:
a `SELECT … FOR KEY SHARE` on the customer, which also rewrote the customer row's lock bits.
That was most of a sweep's write: 100,000 log rows took 8.2 s with the key and 3.4 s without it
(1M base, PostgreSQL 15). The audit log, another history, has no foreign key either.

Revision ID: 0012_tier_changes_no_fk
Revises: 0011_purchases_index
Create Date: 2026-12-01 09:30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012_tier_changes_no_fk"
down_revision: str | None = "0011_purchases_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE tier_changes DROP CONSTRAINT fk_tier_changes_customer_id_customers")


def downgrade() -> None:
    op.execute(
        "ALTER TABLE tier_changes ADD CONSTRAINT fk_tier_changes_customer_id_customers "
        "FOREIGN KEY (customer_id) REFERENCES customers (id)"
    )
