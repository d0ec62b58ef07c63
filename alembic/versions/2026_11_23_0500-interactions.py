"""Interactions, tasks, segmentation rules (versioned), tier changes, sweep runs; owner_assigned_at.

Revision ID: 0003_interactions
Revises: 0002_customers
Create Date: 2026-11-23 05:00
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from alembic import op

revision: str = "0003_interactions"
down_revision: str | None = "0002_customers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Version 1 of the segmentation rules: the defaults of SPEC §3 and §4. Later versions are rows
# written by PUT /segments/rules; this one is frozen here so the migration stays reproducible.
DEFAULT_RULES = {
    "value_tier": {
        "churn_risk_quiet_days": 90,
        "churn_risk_unresolved_complaint": True,
        "high_value_amount": "100000.00",
        "high_value_window_days": 180,
        "high_value_deals": 3,
        "potential_open_need": True,
        "potential_interactions": 2,
        "potential_window_days": 90,
    },
    "lifecycle": {"churned_quiet_days": 180},
    "activity": {"active_days": 30, "lost_days": 90},
    "reminders": {"stale_days": 30, "cadence_days": {"high_value": 7, "potential": 14}},
    "pool": {"release_days": 90},
}

CHANNELS = "'phone','visit','website_form','wechat','chat','email','store','exhibition','other'"
KINDS = "'inquiry','follow_up','meeting','quote','purchase','complaint','service','feedback'"


def _ts(name: str, **kw: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    # When the current owner got the customer: the pool release counts quiet days from here too,
    # so a customer just claimed or assigned is not released by the next sweep. A trigger keeps
    # it right for every writer (claim, assign, import) without each one remembering to.
    op.add_column("customers", _ts("owner_assigned_at"))
    op.execute("UPDATE customers SET owner_assigned_at = created_at WHERE owner_id IS NOT NULL")
    op.execute(
        """
        CREATE FUNCTION customers_owner_assigned_at() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                IF NEW.owner_id IS NOT NULL THEN
                    NEW.owner_assigned_at := coalesce(NEW.owner_assigned_at, now());
                END IF;
            ELSIF NEW.owner_id IS DISTINCT FROM OLD.owner_id THEN
                NEW.owner_assigned_at := CASE WHEN NEW.owner_id IS NULL THEN NULL ELSE now() END;
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER customers_owner_assigned_at BEFORE INSERT OR UPDATE OF owner_id "
        "ON customers FOR EACH ROW EXECUTE FUNCTION customers_owner_assigned_at()"
    )

    # Every customer is in exactly one RFM class from the start; the sweep scores buyers.
    op.alter_column("customers", "rfm_segment", server_default="no_purchase")
    op.execute("UPDATE customers SET rfm_segment = 'no_purchase' WHERE rfm_segment IS NULL")

    op.create_table(
        "interactions",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("customer_id", sa.BigInteger, nullable=False),
        _ts("occurred_at", nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("summary", sa.Text),
        sa.Column("sentiment", sa.String(12)),
        sa.Column("commitment", sa.Text),
        sa.Column("staff_id", sa.BigInteger),
        sa.Column("amount", sa.Numeric(16, 2)),
        sa.Column("products", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("resolved", sa.Boolean),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_by", sa.String(80)),
        sa.Column("updated_by", sa.String(80)),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("updated_at", nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_interactions"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_interactions_customer_id_customers"
        ),
        sa.ForeignKeyConstraint(["staff_id"], ["users.id"], name="fk_interactions_staff_id_users"),
        sa.CheckConstraint(f"channel IN ({CHANNELS})", name="channel"),
        sa.CheckConstraint(f"kind IN ({KINDS})", name="kind"),
        sa.CheckConstraint("direction IN ('inbound','outbound')", name="direction"),
        sa.CheckConstraint(
            "sentiment IS NULL OR sentiment IN ('positive','hesitant','dissatisfied')",
            name="sentiment",
        ),
        # Amount and products belong to purchases, the resolved flag to complaints.
        sa.CheckConstraint(
            "(kind = 'purchase' AND amount IS NOT NULL AND amount >= 0)"
            " OR (kind <> 'purchase' AND amount IS NULL AND products = '{}')",
            name="purchase_amount",
        ),
        sa.CheckConstraint(
            "(kind = 'complaint') = (resolved IS NOT NULL)", name="complaint_resolved"
        ),
    )
    op.create_index(
        "ix_interactions_customer_occurred",
        "interactions",
        ["customer_id", sa.text("occurred_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_interactions_occurred",
        "interactions",
        [sa.text("occurred_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_interactions_staff_occurred", "interactions", ["staff_id", sa.text("occurred_at DESC")]
    )

    op.create_table(
        "tasks",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("customer_id", sa.BigInteger, nullable=False),
        sa.Column("interaction_id", sa.BigInteger),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("assignee_id", sa.BigInteger, nullable=False),
        _ts("due_at", nullable=False),
        sa.Column("status", sa.String(10), nullable=False, server_default="open"),
        _ts("completed_at"),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_by", sa.String(80)),
        sa.Column("updated_by", sa.String(80)),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("updated_at", nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_tasks_customer_id_customers"
        ),
        sa.ForeignKeyConstraint(
            ["interaction_id"], ["interactions.id"], name="fk_tasks_interaction_id_interactions"
        ),
        sa.ForeignKeyConstraint(["assignee_id"], ["users.id"], name="fk_tasks_assignee_id_users"),
        sa.CheckConstraint("status IN ('open','done','cancelled')", name="status"),
        sa.CheckConstraint("(status = 'done') = (completed_at IS NOT NULL)", name="completed_at"),
    )
    op.create_index(
        "uq_tasks_interaction_id",
        "tasks",
        ["interaction_id"],
        unique=True,
        postgresql_where=sa.text("interaction_id IS NOT NULL"),
    )
    op.create_index("ix_tasks_assignee_status_due", "tasks", ["assignee_id", "status", "due_at"])
    op.create_index("ix_tasks_customer_created", "tasks", ["customer_id", "created_at", "id"])
    op.create_index(
        "ix_tasks_open_due", "tasks", ["due_at", "id"], postgresql_where=sa.text("status = 'open'")
    )

    rules = op.create_table(
        "segment_rules",
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("rules", pg.JSONB, nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("version", name="pk_segment_rules"),
    )
    op.bulk_insert(
        rules,
        [{"version": 1, "rules": json.loads(json.dumps(DEFAULT_RULES)), "created_by": "migration"}],
    )

    op.create_table(
        "tier_changes",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("customer_id", sa.BigInteger, nullable=False),
        _ts("changed_at", nullable=False, server_default=sa.func.now()),
        sa.Column("dimension", sa.String(20), nullable=False),
        sa.Column("old_class", sa.String(30)),
        sa.Column("new_class", sa.String(30)),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("cause", sa.String(20), nullable=False),
        sa.Column("rule_version", sa.Integer),
        sa.PrimaryKeyConstraint("id", name="pk_tier_changes"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_tier_changes_customer_id_customers"
        ),
        sa.CheckConstraint(
            "dimension IN ('value_tier','lifecycle','activity','rfm_segment','owner')",
            name="dimension",
        ),
        sa.CheckConstraint(
            "cause IN ('interaction','sweep','rule_change','manual','claim','merge','edit','import')",
            name="cause",
        ),
    )
    op.create_index(
        "ix_tier_changes_customer_changed",
        "tier_changes",
        ["customer_id", sa.text("changed_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_tier_changes_dimension_changed", "tier_changes", ["dimension", "changed_at"]
    )

    op.create_table(
        "segment_sweeps",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("cause", sa.String(20), nullable=False),
        sa.Column("rule_version", sa.Integer, nullable=False),
        _ts("started_at", nullable=False),
        _ts("finished_at", nullable=False),
        sa.Column("customers_changed", sa.Integer, nullable=False),
        sa.Column("tier_changes", sa.Integer, nullable=False),
        sa.Column("rfm_changed", sa.Integer, nullable=False),
        sa.Column("released", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_segment_sweeps"),
    )
    op.create_index("ix_segment_sweeps_finished", "segment_sweeps", ["finished_at"])


def downgrade() -> None:
    op.drop_table("segment_sweeps")
    op.drop_table("tier_changes")
    op.drop_table("segment_rules")
    op.drop_table("tasks")
    op.drop_table("interactions")
    op.execute("DROP TRIGGER customers_owner_assigned_at ON customers")
    op.execute("DROP FUNCTION customers_owner_assigned_at()")
    op.drop_column("customers", "owner_assigned_at")
    op.alter_column("customers", "rfm_segment", server_default=None)
