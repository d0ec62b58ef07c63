"""Statements run on the asyncpg connection directly still fail the way every other does."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import make_user, seed_customer

API = "/api/v1"

# Fails the first insert into interactions with a deadlock (sqlstate 40P01); a sequence, not a
# table, counts the calls, so the count survives the failed transaction's rollback.
FAIL_ONCE = [
    "CREATE SEQUENCE fail_once_seq",
    """CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF nextval('fail_once_seq') = 1 THEN
            RAISE EXCEPTION 'simulated deadlock' USING ERRCODE = '40P01';
        END IF;
        RETURN NEW;
    END $$""",
    "CREATE TRIGGER fail_once BEFORE INSERT ON interactions "
    "FOR EACH ROW EXECUTE FUNCTION fail_once()",
]


async def test_a_deadlock_in_a_driver_level_statement_is_retried(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    rep = await make_user(engine)
    customer = await seed_customer(engine, owner_id=rep.id)
    async with engine.begin() as conn:
        for sql in FAIL_ONCE:
            await conn.exec_driver_sql(sql)
    try:
        r = await client.post(
            f"{API}/interactions",
            json={
                "customer_code": customer.code,
                "channel": "phone",
                "kind": "follow_up",
                "direction": "outbound",
            },
            headers=rep.headers,
        )
        assert r.status_code == 201, r.text
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM interactions")) == 1
            assert await conn.scalar(text("SELECT last_value FROM fail_once_seq")) == 2
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("DROP TRIGGER fail_once ON interactions")
            await conn.exec_driver_sql("DROP FUNCTION fail_once()")
            await conn.exec_driver_sql("DROP SEQUENCE fail_once_seq")
