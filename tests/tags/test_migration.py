"""The tags and segments migration seeds the default categories and is reversible."""

from __future__ import annotations

import asyncio
import uuid

from alembic.config import Config
from sqlalchemy.engine import make_url

from alembic import command
from app.cli import ROOT
from tests.conftest import _create_db, _drop_db
from tests.factories import TAGS_MIGRATION, migration_module

TABLES = ("tag_categories", "tags", "customer_tags", "saved_segments")


async def _state(url: str) -> tuple[set[str], list[tuple[str, str, bool]]]:
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename = ANY($1::text[])",
            list(TABLES),
        )
        present = {r["tablename"] for r in rows}
        categories = []
        if "tag_categories" in present:
            categories = [
                (r["code"], r["label"], r["builtin"])
                for r in await conn.fetch(
                    "SELECT code, label, builtin FROM tag_categories ORDER BY id"
                )
            ]
        return present, categories
    finally:
        await conn.close()


def test_migration_seeds_default_categories_and_downgrades(database_url: str) -> None:
    name = f"crm_mig_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create_db(database_url, name))
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["database_url"] = url
    migration = migration_module(TAGS_MIGRATION)
    expected = [(code, label, True) for code, label in migration.DEFAULT_CATEGORIES]
    try:
        command.upgrade(cfg, "head")
        present, categories = asyncio.run(_state(url))
        assert present == set(TABLES)
        assert categories == expected
        assert [c[0] for c in categories] == [
            "need_type",
            "decision_stage",
            "customer_trait",
            "campaign",
        ]

        command.downgrade(cfg, migration.down_revision)
        assert asyncio.run(_state(url)) == (set(), [])

        command.upgrade(cfg, "head")
        assert asyncio.run(_state(url))[1] == expected
    finally:
        asyncio.run(_drop_db(database_url, name))
