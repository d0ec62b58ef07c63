"""Get-one or record-an-interaction in process: the app called as ASGI, one request after
another, against the bench base; prints the process CPU per request (steadier than req/s for
A/B of Python-side changes) and, with --profile, cProfile's hottest functions. Not part of
`bench.run`. An interaction run writes to the base (rows the next `--reset` drops).

    .venv/bin/python -m bench.inproc --requests 3000
    CRM_HOT_READS=false .venv/bin/python -m bench.inproc   # through FastAPI's routing
    .venv/bin/python -m bench.inproc --endpoint interaction --requests 2000
    CRM_HOT_WRITES=false .venv/bin/python -m bench.inproc --endpoint interaction
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
import orjson

from bench.run import API_SETTINGS

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/crm_bench"


Call = tuple[str, bytes, str, list[tuple[bytes, bytes]]]  # path, body, status, headers


async def _requests(url: str, endpoint: str, count: int) -> list[Call]:
    """(path, body, status, headers) of each request to time, the first 300 repeated to warm."""
    from bench.generate import read_info
    from bench.workload import interaction_scenario, tokens, webhook_scenario

    conn = await asyncpg.connect(url)
    try:
        info = await read_info(conn)
        if info is None:
            sys.exit("no bench base: run `python -m bench.generate --scale 1.0` first")
        manager, reps = tokens(info)
        if endpoint == "get":
            rows = await conn.fetch(
                "SELECT code FROM customers WHERE deleted_at IS NULL AND id % 97 = 3 LIMIT $1",
                count,
            )
            auth = [(b"authorization", b"Bearer " + manager.encode())]
            return [(f"/api/v1/customers/{r[0]}", b"", "200", auth) for r in rows]
        if endpoint == "webhook":
            # Each delivery once (a new webhook-id each; the warm-up's are others).
            scenario = await webhook_scenario(conn, info, url)
            assert scenario.fresh is not None
            return [
                (
                    r.path,
                    (r.content or orjson.dumps(r.body).decode()).encode(),
                    str(r.expect),
                    [(k.lower().encode(), v.encode()) for k, v in r.headers.items()],
                )
                for r in scenario.fresh(count + 300)
            ]
        scenario = await interaction_scenario(conn, info, reps)
    finally:
        await conn.close()
    pool = [
        (
            r.path,
            orjson.dumps(r.body),
            str(r.expect),
            [(b"authorization", r.headers["Authorization"].encode())],
        )
        for r in scenario.requests
    ]
    return [pool[i * 7919 % len(pool)] for i in range(count)]


async def run(url: str, endpoint: str, count: int, profile: bool) -> None:
    from app.core.config import get_settings
    from app.core.db import to_async_url
    from app.main import create_app, get_request_scope

    requests = await _requests(url, endpoint, count)
    app = create_app(get_settings(), database_url=to_async_url(url))
    method = "GET" if endpoint == "get" else "POST"

    async def call(path: str, body: bytes, expect: str, extra: list[tuple[bytes, bytes]]) -> None:
        headers = [*extra, (b"host", b"bench")]
        if body:
            headers.append((b"content-type", b"application/json"))
            headers.append((b"content-length", str(len(body)).encode()))
        scope = get_request_scope(path, headers) | {"method": method}
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> MutableMapping[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if str(sent[0]["status"]) != expect:
            sys.exit(f"{method} {path}: {sent[0]['status']} {sent[1:]}")

    async with app.router.lifespan_context(app):
        if endpoint == "webhook":  # each delivery is sent once
            warm, requests = requests[:300], requests[300:]
        else:
            warm = requests[:300]
        for request in warm:  # warm: pool, compiled statements, verified token
            await call(*request)
        profiler = cProfile.Profile() if profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for request in requests:
            await call(*request)
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    settings = get_settings()
    hot = settings.hot_reads if endpoint == "get" else settings.hot_writes
    n = len(requests)
    print(
        f"{n} {endpoint} requests (hot {'on' if hot else 'off'}): "
        f"{1e6 * cpu / n:.0f} µs CPU, {1e6 * wall / n:.0f} µs wall a request"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--endpoint", choices=["get", "interaction", "webhook"], default="get")
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
    asyncio.run(run(args.database_url, args.endpoint, args.requests, args.profile))


if __name__ == "__main__":
    main()
