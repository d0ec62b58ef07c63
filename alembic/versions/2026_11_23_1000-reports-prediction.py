"""Reports and churn prediction: per-month channel acquisition costs (an admin input), the
BG/NBD fits of the sweep, and each customer's stored prediction.

Revision ID: 0008_reports
Revises: 0005_imports
Create Date: 2026-11-23 10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008_reports"
down_revision: str | None = "0005_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, **kw: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    op.create_table(
        "channel_costs",
        sa.Column("channel", sa.String(30), nullable=False),
        # The first day of the month the cost was spent in.
        sa.Column("month", sa.Date, nullable=False),
        sa.Column("amount", sa.Numeric(16, 2), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("updated_by", sa.String(80)),
        _ts("updated_at", nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("channel", "month", name="pk_channel_costs"),
        sa.ForeignKeyConstraint(
            ["channel"], ["source_channels.code"], name="fk_channel_costs_channel_source_channels"
        ),
        sa.CheckConstraint("amount >= 0", name="amount"),
        sa.CheckConstraint("extract(day FROM month) = 1", name="month"),
    )

    op.create_table(
        "prediction_fits",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        _ts("fitted_at", nullable=False, server_default=sa.func.now()),
        # The last day whose purchases the fit saw (in the service's time zone).
        sa.Column("observed_through", sa.Date, nullable=False),
        sa.Column("time_unit", sa.String(10), nullable=False, server_default="day"),
        sa.Column("r", sa.Float(53), nullable=False),
        sa.Column("alpha", sa.Float(53), nullable=False),
        sa.Column("a", sa.Float(53), nullable=False),
        sa.Column("b", sa.Float(53), nullable=False),
        sa.Column("log_likelihood", sa.Float(53), nullable=False),
        sa.Column("customers", sa.Integer, nullable=False),
        sa.Column("distinct_histories", sa.Integer, nullable=False),
        sa.Column("converged", sa.Boolean, nullable=False),
        sa.Column("iterations", sa.Integer, nullable=False),
        sa.Column("duration_ms", sa.Float(53), nullable=False),
        sa.Column("cause", sa.String(20), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prediction_fits"),
    )
    op.create_index("ix_prediction_fits_fitted", "prediction_fits", ["fitted_at"])

    op.add_column("customers", sa.Column("p_alive", sa.Float(53)))
    op.add_column("customers", sa.Column("expected_purchases_90d", sa.Float(53)))
    op.add_column("customers", _ts("prediction_at"))
    op.create_check_constraint(
        op.f("ck_customers_p_alive"),
        "customers",
        "p_alive IS NULL OR (p_alive >= 0 AND p_alive <= 1)",
    )
    # List filters and sort keys (keyset on (value, id)) over live customers.
    live = sa.text("deleted_at IS NULL")
    for col in ("p_alive", "expected_purchases_90d"):
        op.create_index(f"ix_customers_{col}", "customers", [col, "id"], postgresql_where=live)


def downgrade() -> None:
    for col in ("p_alive", "expected_purchases_90d"):
        op.drop_index(f"ix_customers_{col}", table_name="customers")
    op.drop_constraint(op.f("ck_customers_p_alive"), "customers", type_="check")
    for col in ("prediction_at", "expected_purchases_90d", "p_alive"):
        op.drop_column("customers", col)
    op.drop_index("ix_prediction_fits_fitted", table_name="prediction_fits")
    op.drop_table("prediction_fits")
    op.drop_table("channel_costs")
