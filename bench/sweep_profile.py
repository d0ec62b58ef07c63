"""Where a whole-base sweep's time goes: each SQL statement it runs and the Python steps between
them, timed inside `run_sweep` as `bench.hooks` runs it, beside the bare aggregate.

    python -m bench.sweep_profile postgresql://postgres@127.0.0.1:5432/DB [--runs 3] [--five]

`--five` then stores wrong classes on 5% of the customers (as `bench.hooks` does) and profiles
the sweep that follows.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import defaultdict
from typing import Any

import asyncpg
from sqlalchemy import event

from bench.generate import SCRAMBLE, sweep_on


def _label(sql: str) -> str:
    s = " ".join(sql.split())
    for marker in (
        "CREATE TEMP TABLE sweep_changes",
        "INSERT INTO purchase_histories",
        "UPDATE customers c SET value_tier",
        "UPDATE customers c SET flags",
        "ANALYZE pg_temp",
        "GROUP BY x, t_x, t",
    ):
        if marker in s:
            return marker
    return s[:70]


async def profile_once(url: str) -> tuple[float, dict[str, float], dict[str, Any]]:
    from app.core.config import get_settings
    from app.core.db import build_engine, to_async_url
    from app.prediction import service as prediction_service

    times: dict[str, float] = defaultdict(float)
    engine = build_engine(to_async_url(url), get_settings())

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["t0"] = time.perf_counter()

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        times["sql: " + _label(statement)] += time.perf_counter() - conn.info["t0"]

    fit, predict = prediction_service._fit_groups, prediction_service._predict

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a)
            finally:
                times["python: " + name] += time.perf_counter() - t0

        return wrapper

    prediction_service._fit_groups = timed("fit", fit)
    prediction_service._predict = timed("predict", predict)
    try:
        total, result = await sweep_on(engine)
    finally:
        prediction_service._fit_groups = fit
        prediction_service._predict = predict
        await engine.dispose()
    return total, dict(times), result


async def bare(dsn: str, work_mem: str) -> float:
    from bench.hooks import bare_aggregate_sql

    conn = await asyncpg.connect(dsn)
    runs = []
    try:
        for _ in range(2):
            async with conn.transaction():
                await conn.execute(f"SET LOCAL work_mem = '{work_mem}'; SET LOCAL jit = off")
                t0 = time.perf_counter()
                await conn.fetchrow(bare_aggregate_sql())
                runs.append(time.perf_counter() - t0)
    finally:
        await conn.close()
    return min(runs)


def show(total: float, times: dict[str, float], result: dict[str, Any]) -> None:
    print(
        f"sweep {total:.2f} s: changed {result['customers_changed']}, "
        f"tier_changes {result['tier_changes']}, rfm {result['rfm_changed']}, "
        f"predictions {result['prediction']['customers_changed']}, "
        f"refitted {result['prediction']['refitted']}"
    )
    for k, v in sorted(times.items(), key=lambda kv: -kv[1]):
        if v >= 0.005:
            print(f"   {v:7.3f}  {k}")
    print(f"   {total - sum(times.values()):7.3f}  (rest)")


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--five", action="store_true")
    p.add_argument("--no-bare", action="store_true")
    args = p.parse_args()
    dsn = args.url
    totals = []
    for _ in range(args.runs):
        total, times, result = await profile_once(dsn)
        show(total, times, result)
        totals.append(total)
    if totals:
        print(f"no-op sweeps: median {statistics.median(totals):.2f} s of {totals}")
    if not args.no_bare:
        from app.segments import repository as repo

        for work_mem in sorted({"64MB", getattr(repo, "SWEEP_WORK_MEM", "64MB")}):
            b = await bare(dsn, work_mem)
            ratio = statistics.median(totals) / b if totals else 0
            print(f"bare aggregate (work_mem {work_mem}): {b:.2f} s; ratio {ratio:.2f}")
    if args.five:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET statement_timeout = 0")
            changed = await conn.execute(SCRAMBLE.format(where="AND id % 20 = 7"))
        finally:
            await conn.close()
        print(f"scrambled: {changed}")
        total, times, result = await profile_once(dsn)
        show(total, times, result)


if __name__ == "__main__":
    asyncio.run(main())
