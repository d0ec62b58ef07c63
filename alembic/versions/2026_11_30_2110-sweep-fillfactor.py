"""Free space in customers pages (and an index of the deleted customers), so the sweep's (and every recompute's) writes of classes,
RFM and predictions can be HOT updates: none of those columns is indexed except the follow-up
date and the two prediction values, which a recompute rewrites only when they change.

A customers row is about 800 bytes, nine to a page: 85% leaves room for one more version of a
row in every page, which covers a sweep that changes up to about a tenth of the base.

The setting applies to pages filled from now on. An existing table keeps its full pages until
it is rewritten (VACUUM FULL, CLUSTER, or pg_repack without the exclusive lock): until then a
row's first update moves it to a page with room, and later ones can be HOT.

Revision ID: 0010_sweep_fast
Revises: 0008_reports
Create Date: 2026-11-30 21:10
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_sweep_fast"
down_revision: str | None = "0009_audit_seal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE customers SET (fillfactor = 85)")
    # The few deleted customers, so the sweep's purchase scan leaves them out without hashing
    # every customer (app.prediction.repository).
    op.execute("CREATE INDEX ix_customers_deleted ON customers (id) WHERE deleted_at IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX ix_customers_deleted")
    op.execute("ALTER TABLE customers RESET (fillfactor)")
