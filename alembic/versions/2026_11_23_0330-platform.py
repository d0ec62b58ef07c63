"""Platform: extensions, users, service accounts, refresh tokens, login throttling, audit log.

Revision ID: 0001_platform
Revises:
Create Date: 2026-11-23 03:30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from alembic import op

revision: str = "0001_platform"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Serializes audit inserts so that every row links to the one committed just before it.
AUDIT_CHAIN_LOCK = 7245001


def upgrade() -> None:
    for ext in ("citext", "pg_trgm", "btree_gin", "unaccent"):
        op.execute(f"CREATE EXTENSION IF NOT EXISTS {ext}")

    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("email", pg.CITEXT, nullable=False),
        sa.Column("display_name", sa.String(100)),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.CheckConstraint(
            "role IN ('admin','manager','sales','service','marketing','data_admin')",
            name="ck_users_role",
        ),
    )
    op.create_table(
        "service_accounts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("secret_hash", sa.Text, nullable=False),
        sa.Column("scopes", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_service_accounts"),
        sa.UniqueConstraint("client_id", name="uq_service_accounts_client_id"),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("jti", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("jti", name="pk_refresh_tokens"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_refresh_tokens_user_id_users"
        ),
    )
    op.create_index("ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_failures"),
    )
    op.create_index("ix_login_failures_key", "login_failures", ["key"])

    op.execute("CREATE SEQUENCE audit_log_id_seq")
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("entity_type", sa.String(40), nullable=False),
        sa.Column("entity_id", sa.String(80)),
        sa.Column("changes", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("request_id", sa.String(64)),
        sa.Column("prev_hash", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_entity", "audit_log", ["entity_type", "entity_id"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.execute(
        """
        CREATE FUNCTION audit_log_digest(
            p_prev text, p_id bigint, p_at timestamptz, p_actor text, p_action text,
            p_entity_type text, p_entity_id text, p_changes jsonb, p_request_id text
        ) RETURNS text LANGUAGE sql IMMUTABLE AS $$
            SELECT encode(sha256(convert_to(jsonb_build_array(
                p_prev, p_id, (extract(epoch FROM p_at) * 1000000)::bigint, p_actor, p_action,
                p_entity_type, p_entity_id, p_changes, p_request_id)::text, 'UTF8')), 'hex')
        $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE last_hash text;
        BEGIN
            PERFORM pg_advisory_xact_lock({AUDIT_CHAIN_LOCK});
            SELECT hash INTO last_hash FROM audit_log ORDER BY id DESC LIMIT 1;
            NEW.id := nextval('audit_log_id_seq');
            NEW.at := coalesce(NEW.at, now());
            NEW.prev_hash := coalesce(last_hash, repeat('0', 64));
            NEW.hash := audit_log_digest(NEW.prev_hash, NEW.id, NEW.at, NEW.actor, NEW.action,
                NEW.entity_type, NEW.entity_id, NEW.changes, NEW.request_id);
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION audit_log_reject() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only: % rejected', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_chain()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_reject()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_reject()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE audit_log")
    op.execute("DROP FUNCTION audit_log_reject()")
    op.execute("DROP FUNCTION audit_log_chain()")
    op.execute(
        "DROP FUNCTION audit_log_digest(text, bigint, timestamptz, text, text, text, text, jsonb, text)"
    )
    op.execute("DROP SEQUENCE audit_log_id_seq")
    op.drop_table("login_failures")
    op.drop_table("refresh_tokens")
    op.drop_table("service_accounts")
    op.drop_table("users")
