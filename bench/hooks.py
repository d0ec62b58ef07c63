"""Whole-base figures (the sweep, bulk tagging, import) and the features not measured yet.

    sweep     the app's own `run_sweep` on the whole base, each in its own transaction:
              no-op (run twice, the second timed), 5% changed, all changed; beside the bare
              aggregate query over interactions (the sweep's `agg` part, run alone)
    bulk tag  POST /api/v1/tags/{id}/bulk with a saved segment of ~10% of the base (100,000
              customers at scale 1.0): add, the same again (no change), remove
    import    `bench.import_rate` (the real job runner, a fresh database) beside a raw COPY of
              the same rows: 100,000 rows at scale 1.0; skipped while the endpoint is absent

"Changed" customers are made by storing wrong classes (activity and value tier) on them: the
sweep computes every customer as always and writes back, and logs, only those. The all-changed
sweep of a run that generates its base is timed by the generator (`bench.generate`): it stores
the wrong classes before building the indexes, where they cost seconds instead of an UPDATE of
every indexed row (263 s at 1M), times the sweep on the finished base, then compacts it again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from bench.generate import SCRAMBLE, BaseInfo, timed_sweep

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Hook:
    name: str
    method: str
    path: str
    table: str | None = None
    measured: bool = False  # a measurement below covers it when present


HOOKS = [
    Hook("record an interaction (tier recompute + audit row)", "POST", "/api/v1/interactions",
         measured=True),
    Hook("whole-base sweep: no-op, 5% changed, all changed", "POST", "/api/v1/segments/recompute",
         measured=True),
    Hook("bulk-tag by saved segment", "POST", "/api/v1/tags/{id}/bulk", measured=True),
    Hook("import rate vs raw COPY of the same rows", "POST", "/api/v1/imports", measured=True),
    Hook("webhook ingest", "POST", "/api/v1/webhooks/{slug}", measured=True),
    Hook("interactions in the base (5,000,000 at scale 1.0)", "", "", table="interactions",
         measured=True),
]  # fmt: skip


def api_routes() -> set[tuple[str, str]]:
    from app.main import iter_routes

    return {(m, path) for path, route in iter_routes() for m in route.methods or ()}


def run_hooks(tables: set[str]) -> list[dict[str, str]]:
    """Each feature: measured, present but not measured yet, or absent from this build."""
    routes = api_routes()
    out = []
    for hook in HOOKS:
        if hook.table is not None:
            present = hook.table in tables
            what = f"table {hook.table}"
        else:
            present = (hook.method, hook.path) in routes
            what = f"{hook.method} {hook.path}"
        if present and hook.measured:
            status, note = "measured", f"{what}: see the figures above"
        elif present:
            status, note = "present, not measured yet", f"{what} exists: add its measurement"
        else:
            status, note = "skipped", f"{what} is not in this build"
        out.append({"name": hook.name, "status": status, "note": note})
    return out


# ---- the sweep -------------------------------------------------------------------------------


def bare_aggregate_sql() -> str:
    """The sweep's per-customer aggregate over interactions, alone: its own CTE text (with the
    rules it reads), every aggregate consumed so none is optimised away."""
    from app.segments import repository as repo

    ctes: str = repo.CLASSIFY_CTES
    cut = re.search(r",\s*base AS \(", ctes)
    if cut is None or "agg AS (" not in ctes:
        raise RuntimeError("cannot find the sweep's aggregate in app.segments.repository")
    return (
        ctes[: cut.start()].replace("/*interaction_scope*/", "")
        + """
SELECT count(*), max(last_at), max(last_purchase_at), sum(deals), sum(hv_sum), sum(recent),
       sum(unresolved)
  FROM agg"""
    )


async def _sweep(url: str) -> tuple[float, dict[str, Any]]:
    return await timed_sweep(url)


async def sweep_figures(
    url: str, dsn: str, progress: Progress, all_changed: dict[str, Any] | None = None
) -> dict[str, Any]:
    """No-op, 5% changed and all changed. `all_changed`: that sweep as timed on the base
    generated in this run (`bench.generate`, wrong classes stored before the indexes were
    built); without it the wrong classes are stored here with one UPDATE of every live
    customer (minutes at 1M: it maintains every index) and the sweep timed after it."""
    conn = await asyncpg.connect(dsn)
    try:
        customers = int(
            await conn.fetchval("SELECT count(*) FROM customers WHERE deleted_at IS NULL")
        )
        interactions = int(await conn.fetchval("SELECT count(*) FROM interactions"))
        # Settle: the run's writes left some customers to recompute.
        settle, _ = await _sweep(url)
        progress(f"   sweep to settle the base: {settle:.1f} s")
        noop, noop_result = await _sweep(url)
        progress(f"   sweep, no-op: {noop:.2f} s ({noop_result['customers_changed']} changed)")
        sql = bare_aggregate_sql()
        from app.segments import repository as repo

        bare_runs = []
        for _ in range(2):  # as warm as the sweep's own scan: the better of two
            async with conn.transaction():
                # The same session settings as the sweep (app.segments.repository).
                await conn.execute(
                    f"SET LOCAL work_mem = '{repo.SWEEP_WORK_MEM}'; SET LOCAL jit = off"
                )
                t0 = time.perf_counter()
                await conn.fetchrow(sql)
                bare_runs.append(time.perf_counter() - t0)
        bare = min(bare_runs)
        progress(f"   bare aggregate over interactions: {bare:.2f} s")
        out: dict[str, Any] = {
            "customers": customers,
            "interactions": interactions,
            "noop_seconds": round(noop, 2),
            "noop": noop_result,
            "bare_aggregate_seconds": round(bare, 2),
            "bare_aggregate_sql": sql,
            "noop_over_bare": round(noop / bare, 2) if bare else None,
        }
        cases = [("five_percent", "AND id % 20 = 7")]
        if all_changed is None:
            cases.append(("all", ""))
        else:
            out["all_seconds"] = all_changed["seconds"]
            out["all"] = all_changed["result"] | {
                "scrambled": all_changed["scrambled"],
                "setup": all_changed["setup"],
                "when": "right after generation, before the endpoints",
            }
        for label, where in cases:
            t0 = time.perf_counter()
            await conn.execute("SET statement_timeout = 0")
            changed = await conn.execute(SCRAMBLE.format(where=where))
            setup = time.perf_counter() - t0
            seconds, result = await _sweep(url)
            progress(
                f"   sweep, {label.replace('_', ' ')} changed: {seconds:.1f} s "
                f"({result['customers_changed']:,} customers written; setup {setup:.1f} s)"
            )
            out[f"{label}_seconds"] = round(seconds, 2)
            out[label] = result | {
                "scrambled": int(changed.split()[-1]),
                "setup_seconds": round(setup, 1),
                "setup": "one UPDATE of the indexed table, not timed",
                "when": "after the endpoints and the sweeps above",
            }
        t0 = time.perf_counter()
        await conn.execute("VACUUM ANALYZE customers")
        await conn.execute("VACUUM ANALYZE tier_changes")
        out["vacuum_after_seconds"] = round(time.perf_counter() - t0, 1)
    finally:
        await conn.close()
    return out


# ---- bulk tag --------------------------------------------------------------------------------

BULK_TAG = "基准批量标签"
BULK_SEGMENT = "基准：约一成客户"


async def bulk_tag_figures(
    url: str, dsn: str, info: BaseInfo, progress: Progress
) -> dict[str, Any]:
    """A saved segment of the customers created in a tenth of the days (~10% of the base),
    tagged by an admin through the API in-process: add, add again, remove."""
    import httpx

    from app.core.config import get_settings
    from app.core.db import to_async_url
    from app.main import create_app
    from bench.workload import bearer, tokens_admin

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM saved_segments WHERE name = $1", BULK_SEGMENT)
        await conn.execute("DELETE FROM tags WHERE name = $1", BULK_TAG)
    finally:
        await conn.close()
    layout = info.layout
    start = layout.date0 + timedelta(days=int(layout.days * 0.45))
    end = start + timedelta(days=layout.days // 10 - 1)
    admin = bearer(tokens_admin(info))
    out: dict[str, Any] = {}
    app = create_app(get_settings(), database_url=to_async_url(url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=600
        ) as client:

            async def post(path: str, body: dict[str, Any], expect: int = 200) -> Any:
                r = await client.post(path, json=body, headers=admin)
                if r.status_code != expect:
                    raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:300]}")
                return r.json()

            tag = await post("/api/v1/tags", {"category": "campaign", "name": BULK_TAG}, 201)
            segment = await post(
                "/api/v1/segments",
                {
                    "name": BULK_SEGMENT,
                    "shared": True,
                    "filter": {"created_from": start.isoformat(), "created_to": end.isoformat()},
                },
                201,
            )
            url_bulk = f"/api/v1/tags/{tag['id']}/bulk"
            for label, action in (("add", "add"), ("add_again", "add"), ("remove", "remove")):
                t0 = time.perf_counter()
                result = await post(url_bulk, {"action": action, "segment_id": segment["id"]})
                seconds = time.perf_counter() - t0
                out[label] = {
                    "seconds": round(seconds, 2),
                    "matched": result["matched"],
                    "changed": result["changed"],
                }
                progress(
                    f"   bulk tag {label.replace('_', ' ')}: {seconds:.2f} s "
                    f"({result['matched']:,} matched, {result['changed']:,} changed)"
                )
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM saved_segments WHERE id = $1", segment["id"])
        await conn.execute("DELETE FROM tags WHERE id = $1", tag["id"])
    finally:
        await conn.close()
    out["segment"] = f"created {start} … {end}"
    return out


# ---- import ----------------------------------------------------------------------------------


IMPORT_ROWS_AT_SCALE_1 = 100_000  # 20k rows mostly measured the job's one-off setup


async def import_figures(url: str, scale: float, progress: Progress) -> dict[str, Any]:
    """`bench.import_rate`: a template-header CSV through the real import job runner, into a
    fresh database on the same server, beside COPY of the same rows."""
    if ("POST", "/api/v1/imports") not in api_routes():
        return {"status": "skipped", "note": "POST /api/v1/imports is not in this build"}
    from bench import import_rate

    rows = max(1_000, round(IMPORT_ROWS_AT_SCALE_1 * scale))
    path = import_rate.ROOT / "data" / f"import_{rows}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        import_rate.generate(path, rows)
    result = await import_rate.measure(url, path, rows, 5_000)
    progress(
        f"   import of {rows:,} rows: {result['import_rows_per_s']:,} rows/s, raw COPY of the "
        f"same customer rows {result['raw_copy_customer_rows_per_s']:,} rows/s "
        f"({result['import_vs_raw_customer_copy']:.1%})"
    )
    out = dict(result)
    out["job_status"] = out.pop("status")
    return out | {"status": "measured"}
