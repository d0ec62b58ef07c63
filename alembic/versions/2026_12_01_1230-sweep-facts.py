"""The sweep keeps each customer's interaction facts between runs and refreshes only the stale.

Every sweep used to aggregate all the interactions (5M rows at 1M customers), though between two
sweeps only a few customers' facts can change: those whose interactions were written (marked in
`sweep_facts_pending` by the triggers below, whatever writes them: the API, an import, a merge,
SQL by hand), and those with an interaction that the windows' moving edges crossed (found from
`ix_interactions_occurred` by the sweep, from the bounds it last used, kept in
`sweep_facts_state`). See app.segments.repository (`refresh_facts`).

- `sweep_facts`: one row a customer with at least one interaction: the facts the
  classification reads (the `agg` CTE) and the purchase history the churn model and the RFM
  scores read, as of the bounds in `sweep_facts_state`.
- `sweep_facts_pending`: customer ids whose interactions changed since the sweep last read them.
  An append-only list with duplicates and no key: the sweep deletes the rows its snapshot sees,
  in the statement that reads them, so a mark committed later is never lost (with a key, an
  insert that found the old mark would add nothing, and the sweep could then delete that mark
  after reading the facts without the new interaction).
- `sweep_facts_state`: one row, the bounds the facts were computed with; none until the first
  sweep, which then computes every customer's facts.

The triggers are per statement, with transition tables: a bulk load marks each customer once.

Revision ID: 0013_sweep_facts
Revises: 0012_tier_changes_no_fk
Create Date: 2026-12-01 12:30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_sweep_facts"
down_revision: str | None = "0012_tier_changes_no_fk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE sweep_facts (
            customer_id bigint NOT NULL,
            last_at timestamptz,
            last_purchase_at timestamptz,
            purchase_recorded_at timestamptz,
            deals bigint NOT NULL,
            hv_sum numeric NOT NULL,
            recent bigint NOT NULL,
            unresolved bigint NOT NULL,
            -- The purchase history (NULL without a purchase): days with a purchase after the
            -- first through `through`, first and last such days, the newest record among them;
            -- then over every purchase: the last day and the sum.
            x integer,
            first_day date,
            last_day_through date,
            recorded_through timestamptz,
            last_day date,
            amount numeric,
            CONSTRAINT pk_sweep_facts PRIMARY KEY (customer_id)
        )
        """
    )
    op.execute("CREATE TABLE sweep_facts_pending (customer_id bigint NOT NULL)")
    op.execute(
        """
        CREATE TABLE sweep_facts_state (
            id smallint NOT NULL DEFAULT 1,
            tz text NOT NULL,
            hv_since timestamptz NOT NULL,
            pot_since timestamptz NOT NULL,
            through date NOT NULL,
            refreshed_at timestamptz NOT NULL,
            CONSTRAINT pk_sweep_facts_state PRIMARY KEY (id),
            CONSTRAINT ck_sweep_facts_state_one_row CHECK (id = 1)
        )
        """
    )
    op.execute(
        """
        CREATE FUNCTION interactions_mark_pending() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO sweep_facts_pending (customer_id)
                SELECT DISTINCT customer_id FROM new_rows;
            ELSIF TG_OP = 'UPDATE' THEN
                INSERT INTO sweep_facts_pending (customer_id)
                SELECT customer_id FROM old_rows UNION SELECT customer_id FROM new_rows;
            ELSE
                INSERT INTO sweep_facts_pending (customer_id)
                SELECT DISTINCT customer_id FROM old_rows;
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER interactions_pending_insert AFTER INSERT ON interactions "
        "REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION interactions_mark_pending()"
    )
    op.execute(
        "CREATE TRIGGER interactions_pending_update AFTER UPDATE ON interactions "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION interactions_mark_pending()"
    )
    op.execute(
        "CREATE TRIGGER interactions_pending_delete AFTER DELETE ON interactions "
        "REFERENCING OLD TABLE AS old_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION interactions_mark_pending()"
    )
    # A TRUNCATE has no transition table: it makes the next sweep compute every fact again.
    op.execute(
        """
        CREATE FUNCTION interactions_reset_facts() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM sweep_facts_state;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER interactions_reset_facts AFTER TRUNCATE ON interactions "
        "FOR EACH STATEMENT EXECUTE FUNCTION interactions_reset_facts()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER interactions_reset_facts ON interactions")
    op.execute("DROP FUNCTION interactions_reset_facts()")
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER interactions_pending_{event} ON interactions")
    op.execute("DROP FUNCTION interactions_mark_pending()")
    op.execute("DROP TABLE sweep_facts_state")
    op.execute("DROP TABLE sweep_facts_pending")
    op.execute("DROP TABLE sweep_facts")
