"""The sealed hash chain: writers never wait on each other, the sealer links committed rows in a
well-defined order, sealing is idempotent, and tampering with sealed rows is named by verify."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.audit import service as audit
from app.auth.permissions import Role
from app.core.config import Settings, get_settings
from app.core.db import build_sessionmaker
from app.main import create_app
from tests.factories import make_user

ZERO_HASH = "0" * 64


async def _write(engine: AsyncEngine, n: int, *, actor: str = "user:1") -> None:
    maker = build_sessionmaker(engine)
    for i in range(n):
        async with maker() as session, session.begin():
            await audit.record(
                session,
                actor=actor,
                action="customer.update",
                entity_type="customer",
                entity_id=f"C{i}",
                changes={"name": {"before": "旧", "after": "新"}},
            )


async def _chain(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT id, seq, actor, entity_id, prev_hash, hash FROM audit_log ORDER BY id")
        )
        return list(result.all())


async def _verify(client: httpx.AsyncClient, engine: AsyncEngine) -> dict[str, Any]:
    admin = await make_user(engine, role=Role.admin)
    r = await client.get("/api/v1/audit/verify", headers=admin.headers)
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


async def _tamper(engine: AsyncEngine, statement: str, **params: Any) -> None:
    async with engine.begin() as conn:
        # A superuser bypassing the triggers is exactly what the hash chain must expose.
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text(statement), params)


WRITERS = 16


async def test_concurrent_writers_never_wait_on_each_other(database_url: str, engine: AsyncEngine):
    """All writers hold an open transaction with an inserted audit row at the same time. Were
    any insert to wait on another writer (as behind the old chain lock), its short lock
    timeout would turn the wait into an error."""
    writers = create_async_engine(database_url, pool_size=WRITERS, max_overflow=0)
    maker = build_sessionmaker(writers)
    all_inserted = asyncio.Barrier(WRITERS)

    async def write(i: int) -> None:
        async with maker() as session, session.begin():
            await session.execute(text("SET LOCAL lock_timeout = '500ms'"))
            try:
                await audit.record(
                    session, actor=f"user:{i}", action="x.create", entity_type="x", entity_id=i
                )
                await audit.record_many(
                    session,
                    actor=f"user:{i}",
                    action="x.tag",
                    entity_type="x",
                    entries=[(str(i), {})],
                )
            finally:
                # Commit only once every writer has inserted: all transactions overlap.
                await all_inserted.wait()

    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(write(i) for i in range(WRITERS)))
    finally:
        await writers.dispose()
    assert await audit.seal_pending(engine) == 2 * WRITERS
    rows = await _chain(engine)
    assert sorted(r.seq for r in rows) == list(range(1, 2 * WRITERS + 1))


async def test_sealing_links_committed_rows_in_id_order(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    await _write(engine, 3)
    async with build_sessionmaker(engine)() as session, session.begin():
        await audit.record_many(
            session,
            actor="user:1",
            action="tag.bulk_add",
            entity_type="customer",
            entries=[("C9", {"tag": 1}), ("C8", {"tag": 1})],
        )
    rows = await _chain(engine)
    assert all(r.seq is None and r.hash is None for r in rows)  # writers leave the chain alone

    assert await audit.seal_pending(engine) == 5
    rows = await _chain(engine)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert [r.entity_id for r in rows][3:] == ["C9", "C8"]
    assert rows[0].prev_hash == ZERO_HASH
    for previous, row in itertools.pairwise(rows):
        assert row.prev_hash == previous.hash and len(row.hash) == 64
    body = await _verify(client, engine)
    assert body == {"ok": True, "rows_checked": 5, "first_broken_id": None, "reason": None}


async def test_a_row_committed_late_is_sealed_after_higher_ids(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    maker = build_sessionmaker(engine)
    async with maker() as late, late.begin():
        await audit.record(late, actor="late", action="x.create", entity_type="x")
        await _write(engine, 2, actor="early")
        # The open transaction's row is neither sealed nor waited for.
        assert await audit.seal_pending(engine) == 2
    assert await audit.seal_pending(engine) == 1
    rows = sorted(await _chain(engine), key=lambda r: r.seq)
    assert [r.actor for r in rows] == ["early", "early", "late"]
    assert rows[2].id < rows[0].id  # lower id, later chain position
    assert rows[2].prev_hash == rows[1].hash
    body = await _verify(client, engine)
    assert body == {"ok": True, "rows_checked": 3, "first_broken_id": None, "reason": None}


async def test_sealing_twice_changes_nothing(client: httpx.AsyncClient, engine: AsyncEngine):
    await _write(engine, 4)
    assert await audit.seal_pending(engine) == 4
    sealed = await _chain(engine)
    assert await audit.seal_pending(engine) == 0
    assert await _chain(engine) == sealed
    first = await _verify(client, engine)
    assert await _verify(client, engine) == first
    assert await _chain(engine) == sealed
    assert first["ok"] is True and first["rows_checked"] == 4


async def test_a_sealer_finding_another_at_work_steps_aside(engine: AsyncEngine):
    await _write(engine, 2)
    async with engine.connect() as other:
        await other.begin()
        await other.execute(text("SELECT audit_log_seal()"))  # holds the sealing lock
        assert await audit.seal_pending(engine, wait=False) == 0
        await other.commit()
    assert all(r.seq is not None for r in await _chain(engine))


async def test_tampered_field_of_a_sealed_row_is_named(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    await _write(engine, 3)
    await audit.seal_pending(engine)
    rows = await _chain(engine)
    await _tamper(engine, "UPDATE audit_log SET actor = 'someone' WHERE id = :id", id=rows[1].id)
    await _write(engine, 2)  # rows sealed after the tampering do not hide it
    body = await _verify(client, engine)
    assert body["ok"] is False
    assert body["first_broken_id"] == rows[1].id
    assert body["reason"] == "row content does not match its hash"
    assert body["rows_checked"] == 5


async def test_rehashed_tampered_row_breaks_the_link_of_the_next(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    await _write(engine, 3)
    await audit.seal_pending(engine)
    rows = await _chain(engine)
    await _tamper(
        engine,
        "UPDATE audit_log SET changes = '{}'::jsonb, hash = audit_log_digest(prev_hash, id, at,"
        " actor, action, entity_type, entity_id, '{}'::jsonb, request_id) WHERE id = :id",
        id=rows[1].id,
    )
    body = await _verify(client, engine)
    assert body["first_broken_id"] == rows[2].id
    assert body["reason"] == "row does not link to the previous row"


async def test_deleted_first_row_is_named_at_its_successor(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    await _write(engine, 3)
    await audit.seal_pending(engine)
    rows = await _chain(engine)
    await _tamper(engine, "DELETE FROM audit_log WHERE id = :id", id=rows[0].id)
    body = await _verify(client, engine)
    assert body["ok"] is False and body["first_broken_id"] == rows[1].id


async def test_unsealed_and_resealed_row_is_detected(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    """Clearing a row's seal to have it chained again at the end leaves a gap where it was."""
    await _write(engine, 3)
    await audit.seal_pending(engine)
    rows = await _chain(engine)
    await _tamper(
        engine,
        "UPDATE audit_log SET seq = NULL, prev_hash = NULL, hash = NULL WHERE id = :id",
        id=rows[1].id,
    )
    body = await _verify(client, engine)
    assert body["ok"] is False and body["first_broken_id"] == rows[2].id


async def test_only_the_sealing_update_gets_through(engine: AsyncEngine):
    await _write(engine, 2)
    await audit.seal_pending(engine)
    await _write(engine, 1)
    sealed, second, unsealed = await _chain(engine)
    rejected = [
        # re-sealing a sealed row
        ("UPDATE audit_log SET seq = 99, prev_hash = :z, hash = :z WHERE id = :id", sealed.id),
        # sealing while changing the content
        (
            "UPDATE audit_log SET seq = 99, prev_hash = :z, hash = :z, actor = 'x' WHERE id = :id",
            unsealed.id,
        ),
        # content of an unsealed row
        ("UPDATE audit_log SET entity_id = 'x' WHERE id = :id", unsealed.id),
        ("DELETE FROM audit_log WHERE id = :id", unsealed.id),
    ]
    for statement, row_id in rejected:
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement), {"z": ZERO_HASH, "id": row_id})
    assert await _chain(engine) == [sealed, second, unsealed]


async def test_writers_cannot_choose_the_id_or_chain_fields(engine: AsyncEngine):
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO audit_log (id, actor, action, entity_type, seq, prev_hash, hash) "
                "VALUES (1000000, 'a', 'x.create', 'x', 1, :z, :z)"
            ),
            {"z": ZERO_HASH},
        )
    (row,) = await _chain(engine)
    assert row.id != 1000000 and (row.seq, row.prev_hash, row.hash) == (None, None, None)


async def test_the_sealer_refuses_a_transaction_that_wrote(engine: AsyncEngine):
    """Such a transaction would see, and seal, its own uncommitted rows."""
    async with engine.connect() as conn:
        await conn.begin()
        await conn.execute(
            text("INSERT INTO audit_log (actor, action, entity_type) VALUES ('a', 'x.create', 'x')")
        )
        with pytest.raises(DBAPIError, match="has not written"):
            await conn.execute(text("SELECT audit_log_seal()"))
        await conn.rollback()


async def test_verify_counts_rows_committed_after_sealing(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
):
    await _write(engine, 2)
    await audit.seal_pending(engine)
    await _write(engine, 1)

    async def no_seal(*_: Any, **__: Any) -> int:  # a row that commits between seal and check
        return 0

    monkeypatch.setattr(audit, "seal_pending", no_seal)
    body = await _verify(client, engine)
    assert body["ok"] is True and body["rows_checked"] == 2
    assert body["reason"] == "1 row committed after sealing is not checked yet"


async def test_the_list_shows_sealed_entries_with_their_hash(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    await _write(engine, 3)
    admin = await make_user(engine, role=Role.admin)
    items = (await client.get("/api/v1/audit", headers=admin.headers)).json()["items"]
    rows = {r.id: r for r in await _chain(engine)}
    assert len(items) == 3
    assert all(item["hash"] == rows[item["id"]].hash for item in items)


async def test_the_application_seals_in_the_background(engine: AsyncEngine, database_url: str):
    settings = Settings(**{**get_settings().model_dump(), "sweep_interval_seconds": 0})
    app = create_app(settings, database_url=database_url)
    async with app.router.lifespan_context(app):
        await _write(engine, 2)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if all(r.seq is not None for r in await _chain(engine)):
                break
    assert [r.seq for r in await _chain(engine)] == [1, 2]
