"""Half of each customers page kept free, so a sweep that changes every customer's classes
writes every row as a HOT update (no index touched) instead of a new version in each of the
table's twenty indexes.

Revision 0010 left 15% of each page free: room for about one new version of the nine rows a
page then held, enough for a sweep that changes a tenth of the base. A rule change, or the
sweep after a long pause, changes most of them: measured on the 1M-customer benchmark base
with every live customer's classes wrong (`bench.generate` with `all_changed`), the sweep that
puts them right took 260 s at fillfactor 85, nearly all of it inserting 998,000 new row
versions into every index (five of them GIN), and 38 s at fillfactor 50, where 997,925 of the
998,000 updates were HOT. A row is about 900 bytes: half a page holds four, and the other half
their four new versions. The table is about 1.8 times larger (1.0 GB at 85, 1.8 GB at 50, 1M
customers); reads by index fetch the same number of pages.

Like 0010's, the setting applies to pages filled from now on; an existing table reaches it when
rewritten (VACUUM FULL, CLUSTER, pg_repack).

Revision ID: 0014_customers_fillfactor_50
Revises: 0013_sweep_facts
Create Date: 2026-12-01 14:30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_customers_fillfactor_50"
down_revision: str | None = "0013_sweep_facts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE customers SET (fillfactor = 50)")


def downgrade() -> None:
    op.execute("ALTER TABLE customers SET (fillfactor = 85)")
