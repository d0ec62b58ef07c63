"""Get-one in process: the app called as ASGI, one request after another, against the bench
base; prints the process CPU per request (steadier than req/s for A/B of Python-side changes)
and, with --profile, cProfile's hottest functions. Not part of `bench.run`.

    .venv/bin/python -m bench.inproc --requests 3000
    CRM_HOT_READS=false .venv/bin/python -m bench.inproc   # through FastAPI's routing
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import asyncpg

from bench.run import API_SETTINGS

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/crm_bench"


async def run(url: str, requests: int, profile: bool) -> None:
    from app.core.config import get_settings
    from app.core.db import to_async_url
    from app.main import create_app, get_request_scope
    from bench.generate import read_info
    from bench.workload import tokens

    conn = await asyncpg.connect(url)
    try:
        info = await read_info(conn)
        codes = [
            r[0]
            for r in await conn.fetch(
                "SELECT code FROM customers WHERE deleted_at IS NULL AND id % 97 = 3 LIMIT $1",
                requests,
            )
        ]
    finally:
        await conn.close()
    if info is None:
        sys.exit("no bench base: run `python -m bench.generate --scale 1.0` first")
    manager, _ = tokens(info)
    app = create_app(get_settings(), database_url=to_async_url(url))
    headers = [(b"authorization", f"Bearer {manager}".encode()), (b"host", b"bench")]

    async def call(code: str) -> None:
        scope = get_request_scope(f"/api/v1/customers/{code}", headers)
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> MutableMapping[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            sys.exit(f"GET {scope['path']}: {sent[0]['status']}")

    async with app.router.lifespan_context(app):
        for code in codes[:300]:  # warm: pool, compiled statements, verified token
            await call(code)
        profiler = cProfile.Profile() if profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for code in codes:
            await call(code)
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    hot = get_settings().hot_reads
    print(
        f"{len(codes)} get-one requests (hot reads {'on' if hot else 'off'}): "
        f"{1e6 * cpu / len(codes):.0f} µs CPU, {1e6 * wall / len(codes):.0f} µs wall a request"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--profile", action="store_true", help="cProfile the timed requests")
    args = parser.parse_args(argv)
    for name, value in API_SETTINGS.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("CRM_JWT_SECRET", os.urandom(24).hex())
    from app.core.logging import configure_logging

    # The access log is written as in production, to nowhere.
    stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115 (process lifetime)
    configure_logging("INFO")
    sys.stderr = stderr
    asyncio.run(run(args.database_url, args.requests, args.profile))


if __name__ == "__main__":
    main()
