"""Audit log: lock-free inserts, chained afterwards by a sealer.

Until now every audit INSERT took one global advisory lock in its trigger, read the last hash and
held the lock until COMMIT, so every audited write in the system ran one at a time. Now an insert
only stamps its row (id, time) and leaves the chain fields NULL. `audit_log_seal()` links the
committed rows later: under an advisory lock of its own (only sealers contend), it gives each
unsealed row the next chain position (`seq`), the previous row's hash and its own, in id order
within one sealing run. A row whose transaction commits late, after rows with higher ids were
sealed, simply gets a later position: the chain order is `seq`, not `id`.

Why no transaction-id horizon (xid < pg_snapshot_xmin): the sealer runs READ COMMITTED and takes
its snapshot after the lock, so it only ever sees rows whose inserting transactions committed
(`audit_log_seal` refuses to run in a transaction that wrote, whose own rows it would see). The
horizon would add no guarantee, yet any long writing transaction (the sweep, an import) would
hold back the sealing of every row inserted after it began.

Rows written before this revision keep their hashes: they were chained in id order with the same
digest, so they get `seq` in id order and verify unchanged (nothing is re-hashed, so nothing
already tampered with is laundered).

Revision ID: 0009_audit_seal
Revises: 0008_reports
Create Date: 2026-11-30 21:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_audit_seal"
down_revision: str | None = "0008_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The chain lock of revision 0001, now taken by sealers only (never by writers).
AUDIT_CHAIN_LOCK = 7245001

_ZERO_HASH = "repeat('0', 64)"
# Every column but the chain fields: what a row records, fixed once inserted.
_CONTENT_COLUMNS = (
    "id",
    "at",
    "actor",
    "action",
    "entity_type",
    "entity_id",
    "changes",
    "request_id",
)
_CONTENT = ", ".join(_CONTENT_COLUMNS)


def _row(alias: str) -> str:
    return "(" + ", ".join(f"{alias}.{column}" for column in _CONTENT_COLUMNS) + ")"


def upgrade() -> None:
    op.execute("DROP TRIGGER audit_log_chain ON audit_log")
    op.execute("DROP TRIGGER audit_log_no_change ON audit_log")
    op.execute("DROP FUNCTION audit_log_chain()")

    op.execute("ALTER TABLE audit_log ADD COLUMN seq bigint")
    op.execute("ALTER TABLE audit_log ALTER COLUMN prev_hash DROP NOT NULL")
    op.execute("ALTER TABLE audit_log ALTER COLUMN hash DROP NOT NULL")
    op.execute("ALTER TABLE audit_log ALTER COLUMN id SET DEFAULT nextval('audit_log_id_seq')")
    op.execute(
        "UPDATE audit_log a SET seq = n.position "
        "FROM (SELECT id, row_number() OVER (ORDER BY id) AS position FROM audit_log) n "
        "WHERE a.id = n.id"
    )
    # Partial: an insert (seq still NULL) adds no entry here, only the seal does.
    op.execute("CREATE UNIQUE INDEX uq_audit_log_seq ON audit_log (seq) WHERE seq IS NOT NULL")
    op.execute(
        "ALTER TABLE audit_log ADD CONSTRAINT ck_audit_log_sealed_whole CHECK ("
        "(seq IS NULL AND prev_hash IS NULL AND hash IS NULL) OR "
        "(seq IS NOT NULL AND prev_hash IS NOT NULL AND hash IS NOT NULL))"
    )
    # The sealer's work list: small, since rows leave it within about a second.
    op.execute("CREATE INDEX ix_audit_log_unsealed ON audit_log (id) WHERE seq IS NULL")

    # No lock here: concurrent writers never wait on each other. The writer chooses neither
    # the id nor any chain field.
    op.execute(
        """
        CREATE FUNCTION audit_log_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.id := nextval('audit_log_id_seq');
            NEW.at := coalesce(NEW.at, now());
            NEW.seq := NULL;
            NEW.prev_hash := NULL;
            NEW.hash := NULL;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_stamp BEFORE INSERT ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_stamp()"
    )
    # Append-only, except the one update that seals a row: chain fields from NULL to set, every
    # other column unchanged. A WHEN condition, so the sealing update runs no function at all.
    op.execute(
        f"""
        CREATE TRIGGER audit_log_no_change BEFORE UPDATE ON audit_log FOR EACH ROW
        WHEN (NOT (OLD.seq IS NULL AND NEW.seq IS NOT NULL
                   AND {_row("NEW")} IS NOT DISTINCT FROM {_row("OLD")}))
        EXECUTE FUNCTION audit_log_reject()
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_reject()"
    )

    # Seals up to p_limit committed rows, in id order, after the last sealed one. Returns how
    # many it sealed, or NULL when p_wait is false and another sealer holds the lock.
    op.execute(
        f"""
        CREATE FUNCTION audit_log_seal(p_wait boolean DEFAULT true, p_limit integer DEFAULT 10000)
        RETURNS integer LANGUAGE plpgsql
        -- A plain index scan marks the entries of rows already sealed (dead versions) as it
        -- passes them; a bitmap scan would revisit them all every second until a vacuum.
        SET enable_bitmapscan = off
        AS $$
        DECLARE
            last_seq bigint;
            last_hash text;
            r record;
            ids bigint[] := '{{}}';
            seqs bigint[] := '{{}}';
            prevs text[] := '{{}}';
            hashes text[] := '{{}}';
            sealed integer;
        BEGIN
            -- A transaction that wrote could see (and seal) its own uncommitted rows; one under
            -- a transaction snapshot would not see the previous sealer's work.
            IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
                RAISE EXCEPTION 'audit_log_seal must run in a transaction that has not written';
            END IF;
            IF current_setting('transaction_isolation') <> 'read committed' THEN
                RAISE EXCEPTION 'audit_log_seal must run at READ COMMITTED';
            END IF;
            IF p_wait THEN
                PERFORM pg_advisory_xact_lock({AUDIT_CHAIN_LOCK});
            ELSIF NOT pg_try_advisory_xact_lock({AUDIT_CHAIN_LOCK}) THEN
                RETURN NULL;
            END IF;
            -- Each statement below takes a fresh snapshot, after the lock: it sees the
            -- previous sealer's committed work, and only committed rows.
            SELECT seq, hash INTO last_seq, last_hash
              FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1;
            last_seq := coalesce(last_seq, 0);
            last_hash := coalesce(last_hash, {_ZERO_HASH});
            FOR r IN
                SELECT {_CONTENT} FROM audit_log WHERE seq IS NULL ORDER BY id LIMIT p_limit
            LOOP
                last_seq := last_seq + 1;
                ids := ids || r.id;
                seqs := seqs || last_seq;
                prevs := prevs || last_hash;
                last_hash := audit_log_digest(last_hash, r.id, r.at, r.actor, r.action,
                    r.entity_type, r.entity_id, r.changes, r.request_id);
                hashes := hashes || last_hash;
            END LOOP;
            UPDATE audit_log a
               SET seq = u.seq, prev_hash = u.prev_hash, hash = u.hash
              FROM unnest(ids, seqs, prevs, hashes) AS u (id, seq, prev_hash, hash)
             WHERE a.id = u.id AND a.seq IS NULL;
            GET DIAGNOSTICS sealed = ROW_COUNT;
            IF sealed <> cardinality(ids) THEN
                RAISE EXCEPTION 'audit_log_seal: % of % rows sealed meanwhile by someone else',
                    cardinality(ids) - sealed, cardinality(ids);
            END IF;
            RETURN sealed;
        END $$
        """
    )


def downgrade() -> None:
    # Back to one chain in id order: refuse if the sealed chain is broken (never launder a
    # tampered row), then re-link in id order every row from the first one out of that order.
    op.execute("DROP FUNCTION audit_log_seal(boolean, integer)")
    op.execute("DROP TRIGGER audit_log_no_delete ON audit_log")
    op.execute("DROP TRIGGER audit_log_no_change ON audit_log")
    op.execute("DROP TRIGGER audit_log_stamp ON audit_log")
    op.execute("DROP FUNCTION audit_log_stamp()")
    op.execute("DROP INDEX ix_audit_log_unsealed")
    op.execute("ALTER TABLE audit_log DROP CONSTRAINT ck_audit_log_sealed_whole")
    op.execute("DROP INDEX uq_audit_log_seq")
    op.execute(
        f"""
        DO $$
        DECLARE
            r record;
            expected text := {_ZERO_HASH};
            digest text;
        BEGIN
            FOR r IN SELECT * FROM audit_log WHERE seq IS NOT NULL ORDER BY seq LOOP
                IF r.prev_hash <> expected OR r.hash <> audit_log_digest(r.prev_hash, r.id,
                        r.at, r.actor, r.action, r.entity_type, r.entity_id, r.changes,
                        r.request_id) THEN
                    RAISE EXCEPTION 'audit chain broken at row %: not downgrading', r.id;
                END IF;
                expected := r.hash;
            END LOOP;
            expected := {_ZERO_HASH};
            FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
                digest := audit_log_digest(expected, r.id, r.at, r.actor, r.action,
                    r.entity_type, r.entity_id, r.changes, r.request_id);
                IF r.prev_hash IS DISTINCT FROM expected OR r.hash IS DISTINCT FROM digest THEN
                    UPDATE audit_log SET prev_hash = expected, hash = digest WHERE id = r.id;
                END IF;
                expected := digest;
            END LOOP;
        END $$
        """
    )
    op.execute("ALTER TABLE audit_log DROP COLUMN seq")
    op.execute("ALTER TABLE audit_log ALTER COLUMN id DROP DEFAULT")
    op.execute("ALTER TABLE audit_log ALTER COLUMN hash SET NOT NULL")
    op.execute("ALTER TABLE audit_log ALTER COLUMN prev_hash SET NOT NULL")
    # Revision 0001's insert trigger and its lock, as they were.
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
        "CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_chain()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_reject()"
    )
