"""Customers: the record, per-day code counters, source channels, custom fields, idempotency keys.

Revision ID: 0002_customers
Revises: 0001_platform
Create Date: 2026-11-23 04:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from alembic import op

revision: str = "0002_customers"
down_revision: str | None = "0001_platform"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_SOURCES = [
    ("exhibition", "展会", ["展会"]),
    ("referral", "转介绍", ["介绍", "老客户介绍"]),
    ("online_ads", "线上推广", ["线上广告", "网络推广", "广告"]),
    ("cold_visit", "陌生拜访", ["地推", "上门拜访"]),
    ("website_form", "官网表单", ["官网", "网站表单"]),
    ("phone_inquiry", "电话咨询", ["来电", "电话"]),
    ("wechat", "公众号/微信", ["公众号", "微信"]),
    ("store", "线下门店", ["门店"]),
    ("event", "行业沙龙/活动", ["行业沙龙", "活动", "沙龙"]),
    ("whitepaper", "白皮书留资", ["白皮书"]),
    ("third_party", "第三方渠道", ["第三方"]),
    ("other", "其他", []),
]


def _ts(name: str, **kw: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    sources = op.create_table(
        "source_channels",
        sa.Column("code", sa.String(30), nullable=False),
        sa.Column("label", sa.String(60), nullable=False),
        sa.Column("aliases", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("builtin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.PrimaryKeyConstraint("code", name="pk_source_channels"),
    )
    op.bulk_insert(
        sources,
        [
            {"code": c, "label": label, "aliases": a, "builtin": True}
            for c, label, a in DEFAULT_SOURCES
        ],
    )

    op.create_table(
        "customers",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False, server_default="enterprise"),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("contacts", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("phone", sa.String(20)),
        sa.Column("email", pg.CITEXT),
        sa.Column("industry", sa.String(2)),
        sa.Column("province", sa.String(40)),
        sa.Column("city", sa.String(40)),
        sa.Column("address", sa.Text),
        sa.Column("employee_band", sa.String(20)),
        sa.Column("revenue_band", sa.String(20)),
        sa.Column("gender", sa.String(10)),
        sa.Column("age_band", sa.String(10)),
        sa.Column("occupation", sa.String(60)),
        sa.Column("price_sensitivity", sa.String(10)),
        sa.Column("consumption_habits", sa.Text),
        sa.Column("source", sa.String(30)),
        sa.Column("referrer", sa.String(100)),
        _ts("first_contact_at"),
        sa.Column("core_needs", sa.Text),
        sa.Column("need_tags", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("budget", sa.Numeric(16, 2)),
        sa.Column("need_priority", sa.String(30)),
        sa.Column("decision_makers", sa.Text),
        sa.Column("owner_id", sa.BigInteger),
        _ts("last_follow_up_at"),
        _ts("next_follow_up_at"),
        sa.Column("lifecycle", sa.String(12), nullable=False, server_default="potential"),
        sa.Column("lifecycle_baseline", sa.String(12)),
        sa.Column("value_tier", sa.String(12), nullable=False, server_default="normal"),
        sa.Column("activity", sa.String(10), nullable=False, server_default="active"),
        sa.Column("rfm_r", sa.SmallInteger),
        sa.Column("rfm_f", sa.SmallInteger),
        sa.Column("rfm_m", sa.SmallInteger),
        sa.Column("rfm_segment", sa.String(20)),
        sa.Column(
            "cooperation_status", sa.String(12), nullable=False, server_default="not_started"
        ),
        sa.Column("first_cooperation_date", sa.Date),
        sa.Column("last_cooperation_date", sa.Date),
        sa.Column("products", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("contract_amount", sa.Numeric(16, 2)),
        sa.Column("flags", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("custom", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("search_text", sa.Text, nullable=False, server_default=""),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_by", sa.String(80)),
        sa.Column("updated_by", sa.String(80)),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("updated_at", nullable=False, server_default=sa.func.now()),
        _ts("deleted_at"),
        sa.Column("deleted_by", sa.String(80)),
        sa.PrimaryKeyConstraint("id", name="pk_customers"),
        sa.UniqueConstraint("code", name="uq_customers_code"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name="fk_customers_owner_id_users"),
        sa.ForeignKeyConstraint(
            ["source"], ["source_channels.code"], name="fk_customers_source_source_channels"
        ),
        sa.CheckConstraint("kind IN ('enterprise','individual')", name="kind"),
        sa.CheckConstraint(
            "cooperation_status IN ('not_started','active','paused','terminated')",
            name="cooperation_status",
        ),
        sa.CheckConstraint(
            "lifecycle IN ('potential','new','existing','churned')", name="lifecycle"
        ),
        sa.CheckConstraint(
            "value_tier IN ('high_value','potential','normal','churn_risk')", name="value_tier"
        ),
        sa.CheckConstraint("activity IN ('active','dormant','lost')", name="activity"),
        sa.CheckConstraint(
            "contract_amount IS NULL OR contract_amount >= 0", name="contract_amount"
        ),
    )
    live = sa.text("deleted_at IS NULL")
    op.create_index(
        "ix_customers_owner_created",
        "customers",
        ["owner_id", "created_at", "id"],
        postgresql_where=live,
    )
    op.create_index(
        "ix_customers_created", "customers", ["created_at", "id"], postgresql_where=live
    )
    op.create_index("ix_customers_phone", "customers", ["phone"])
    op.create_index("ix_customers_email", "customers", ["email"])
    op.create_index("ix_customers_last_follow_up", "customers", ["last_follow_up_at"])
    op.execute(
        "CREATE INDEX ix_customers_search_trgm ON customers USING gin (search_text gin_trgm_ops)"
    )
    op.execute("CREATE INDEX ix_customers_custom ON customers USING gin (custom jsonb_path_ops)")
    # One or two Chinese characters are too short for trigrams: they match names by prefix.
    op.execute("CREATE INDEX ix_customers_name_prefix ON customers (name text_pattern_ops)")

    op.create_table(
        "customer_code_counters",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("last_value", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("day", name="pk_customer_code_counters"),
    )
    op.create_table(
        "custom_fields",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("key", sa.String(40), nullable=False),
        sa.Column("label", sa.String(60), nullable=False),
        sa.Column("type", sa.String(10), nullable=False),
        sa.Column("options", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("required", sa.Boolean, nullable=False, server_default=sa.false()),
        _ts("retired_at"),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("updated_at", nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_custom_fields"),
        sa.UniqueConstraint("key", name="uq_custom_fields_key"),
        sa.CheckConstraint("type IN ('text','number','date','enum','bool')", name="type"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.String(80), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.SmallInteger),
        sa.Column("response", pg.JSONB),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("principal", "key", name="pk_idempotency_keys"),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("custom_fields")
    op.drop_table("customer_code_counters")
    op.drop_table("customers")
    op.drop_table("source_channels")
