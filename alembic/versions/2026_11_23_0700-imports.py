"""Imports: job and error tables, the raw (unparseable) phone column, the name match key.

Revision ID: 0005_imports
Revises: 0004_tags_segments
Create Date: 2026-11-23 07:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005_imports"
down_revision: str | None = "0004_tags_segments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The template's follow-up columns have no home on the record yet (interactions and tasks come
# with their own feature); they are kept as two predefined text fields an admin may retire.
TEMPLATE_FIELDS = [
    ("follow_up_summary", "沟通内容摘要"),
    ("next_step", "下一步计划"),
]


def _ts(name: str, **kw: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    op.create_table(
        "import_jobs",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False, server_default="queued"),
        sa.Column("dry_run", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("duplicate_policy", sa.String(8), nullable=False, server_default="skip"),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("file_format", sa.String(4), nullable=False),
        sa.Column("file_size", sa.BigInteger, nullable=False),
        sa.Column("spool_path", sa.Text, nullable=False),
        sa.Column("encoding", sa.String(20)),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("rows_read", sa.Integer, nullable=False, server_default="0"),
        sa.Column("imported", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("warnings", sa.Integer, nullable=False, server_default="0"),
        sa.Column("percent", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("attempts", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("started_at"),
        _ts("finished_at"),
        sa.PrimaryKeyConstraint("id", name="pk_import_jobs"),
        sa.CheckConstraint(
            "status IN ('queued','running','succeeded','failed')", name="ck_import_jobs_status"
        ),
        sa.CheckConstraint(
            "duplicate_policy IN ('skip','update','merge')", name="ck_import_jobs_duplicate_policy"
        ),
    )
    op.create_index(
        "ix_import_jobs_unfinished",
        "import_jobs",
        ["id"],
        postgresql_where=sa.text("status IN ('queued','running')"),
    )
    op.create_index("ix_import_jobs_created_by", "import_jobs", ["created_by", "id"])
    op.create_table(
        "import_errors",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("job_id", sa.BigInteger, nullable=False),
        sa.Column("row_no", sa.Integer),
        sa.Column("column_name", sa.Text),
        sa.Column("value", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_import_errors"),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["import_jobs.id"],
            name="fk_import_errors_job_id_import_jobs",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("level IN ('error','warning')", name="ck_import_errors_level"),
    )
    op.create_index("ix_import_errors_job", "import_errors", ["job_id", "id"])

    # A phone that does not parse (masked, typos) is kept here, never in the E.164 column.
    op.add_column("customers", sa.Column("raw_phone", sa.Text))

    # The import's last-resort match key: the same company name, whitespace and width ignored.
    op.execute(
        "CREATE FUNCTION crm_name_key(text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE "
        "AS $$ SELECT lower(regexp_replace(normalize($1, NFKC), '\\s+', '', 'g')) $$"
    )
    # Not partial: the import's lookup reads deleted customers too (and then skips them).
    op.execute("CREATE INDEX ix_customers_crm_name_key ON customers (crm_name_key(name))")

    fields = sa.table(
        "custom_fields",
        sa.column("key", sa.String),
        sa.column("label", sa.String),
        sa.column("type", sa.String),
    )
    op.bulk_insert(
        fields, [{"key": k, "label": label, "type": "text"} for k, label in TEMPLATE_FIELDS]
    )


def downgrade() -> None:
    keys = ", ".join(f"'{k}'" for k, _ in TEMPLATE_FIELDS)
    op.execute(f"DELETE FROM custom_fields WHERE key IN ({keys})")
    op.execute("DROP INDEX ix_customers_crm_name_key")
    op.execute("DROP FUNCTION crm_name_key(text)")
    op.drop_column("customers", "raw_phone")
    op.drop_table("import_errors")
    op.drop_table("import_jobs")
