"""The stack's own ceiling: a bare ASGI app on the same uvicorn, raw asyncpg, the app's SQL.

No framework, no auth, no validation, no business logic: each request replays the round trips
the real endpoint makes (recorded by `bench.capture` into the plan named by BENCH_PLAN) on a
raw asyncpg pool, and answers the main statement's rows as JSON (orjson). A list or search
request names its recorded variant in the X-Bench-Variant header; get takes the code from the
path; create takes the code from the counter statement, as the app does.

    BENCH_PLAN=plan.json BENCH_DATABASE_URL=postgresql://… python -m bench.stack_app --port 8100
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import orjson

# Module level: FastAPI resolves the handlers' (postponed) annotations in this namespace.
from fastapi import FastAPI, Request
from fastapi.responses import Response

from bench.plan import CODE, Endpoint, Step, code_from_number, load, substitute

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

API = "/api/v1/customers"
INTERACTIONS = "/api/v1/interactions"
WEBHOOKS = "/api/v1/webhooks/"


def _default(value: Any) -> Any:
    return str(value)  # Decimal, UUID


def webhook_slots(data: dict[str, Any], webhook_id: str) -> dict[str, Any]:
    """The inputs a webhook delivery's SQL needs: its id and the caller's phone (the two
    payload shapes the bench sends: call records and form posts)."""
    caller = data["caller"] if "caller" in data else data["data"]["mobile"]
    return {"wid": webhook_id, "phone": "+86" + caller}


async def _init(conn: asyncpg.Connection) -> None:
    # The same binary jsonb codec SQLAlchemy installs (arguments arrive as JSON text).
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda s: b"\x01" + s.encode(),
        decoder=lambda b: orjson.loads(b[1:]),
        schema="pg_catalog",
        format="binary",
    )


async def _no_reset(conn: asyncpg.Connection) -> None:
    """SQLAlchemy's pool sends nothing on check-in; asyncpg's default reset is a round trip."""


class StackApp:
    def __init__(self, plan: dict[str, Endpoint], dsn: str, pool_size: int) -> None:
        self.plan = plan
        self.dsn = dsn
        self.pool_size = pool_size
        self.pool: asyncpg.Pool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        method, path = scope["method"], scope["path"]
        if path == "/healthz":
            await self._answer(send, 200, b'{"status":"ok"}')
            return
        headers = dict(scope["headers"])
        status = 200
        if method == "GET" and path.startswith(API + "/"):
            body = await self._run(self.plan["get"], 0, {CODE: path[len(API) + 1 :]})
        elif method == "GET" and path == API:
            name = "search" if b"q=" in scope["query_string"] else "list"
            body = await self._run(self.plan[name], int(headers[b"x-bench-variant"]), {})
        elif method == "POST" and path == API:
            orjson.loads(await self._read(receive))
            variant = int(headers[b"x-bench-variant"])
            body, status = await self._run(self.plan["create"], variant, {}), 201
        elif method == "POST" and path == INTERACTIONS:
            data = orjson.loads(await self._read(receive))
            variant = int(headers[b"x-bench-variant"])
            body = await self._run(self.plan["interaction"], variant, {CODE: data["customer_code"]})
            status = 201
        elif method == "POST" and path.startswith(WEBHOOKS):
            # No signature check (the ceiling has no auth); the inputs the SQL needs.
            data = orjson.loads(await self._read(receive))
            slots = webhook_slots(data, headers[b"webhook-id"].decode())
            variant = int(headers[b"x-bench-variant"])
            body = await self._run(self.plan["webhook"], variant, slots)
        else:
            await self._answer(send, 404, b'{"detail":"not found"}')
            return
        await self._answer(send, status if body is not None else 404, body or b"{}")

    async def _run(self, endpoint: Endpoint, variant: int, slots: dict[str, Any]) -> bytes | None:
        steps: list[Step] = endpoint.variants[variant]
        answer = endpoint.result_steps[variant] if endpoint.result_steps else endpoint.result_step
        assert self.pool is not None
        rows: list[Any] = []
        async with self.pool.acquire() as conn:
            for i, step in enumerate(steps):
                if step.kind == "control":
                    await conn.execute(step.sql)
                elif step.kind == "ping":
                    await conn.fetchrow(step.sql)
                else:
                    result = await conn.fetch(step.sql, *substitute(step.args, slots))
                    if step.code_day is not None:
                        slots[CODE] = code_from_number(step.code_day, result[0][0])
                    for x in step.sets:
                        slots[x.name] = result[0][x.index] if result else None
                    if i == answer:
                        rows = result
        if endpoint.single:
            return orjson.dumps(dict(rows[0]), default=_default) if rows else None
        items = [dict(r) for r in rows]
        return orjson.dumps({"items": items, "next_cursor": None}, default=_default)

    @staticmethod
    async def _read(receive: Receive) -> bytes:
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        return b"".join(chunks)

    @staticmethod
    async def _answer(send: Send, status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def start(self, application_name: str = "crm-bench-stack") -> None:
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            init=_init,
            reset=_no_reset,
            # Idle connections are kept, as the API's pool keeps them. Closing them after 2 s
            # idle (until 12-07) made 20 backends exit at once while the API was measured
            # next (its get p99 35-50 ms against 11-27 without, 12-07 15:20). With the floor
            # app's 20 and pgbench's 32 that is 92 connections: under max_connections 100.
            max_inactive_connection_lifetime=0,
            server_settings={"application_name": application_name},
        )

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app() -> StackApp:
    """Entry point for uvicorn --factory (each worker builds its own pool)."""
    return StackApp(
        load(Path(os.environ["BENCH_PLAN"])),
        os.environ["BENCH_DATABASE_URL"],
        int(os.environ.get("BENCH_POOL_SIZE", "20")),
    )


def create_framework_app() -> Any:
    """The framework's own floor: the stack app's work (same SQL, same raw asyncpg pool, same
    JSON) behind a bare FastAPI app: its routing, request and response objects, exception
    and exit-stack middleware, and nothing of ours (no auth, validation, middleware or
    dependencies). What the API costs above this is our code; what this costs above the
    stack app is FastAPI's and Starlette's, which no endpoint written with them avoids."""
    stack = create_app()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        await stack.start("crm-bench-framework")
        yield
        await stack.stop()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    def answer(body: bytes | None, status: int = 200) -> Response:
        if body is None:
            return Response(b'{"detail":"not found"}', 404, media_type="application/json")
        return Response(body, status, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return answer(b'{"status":"ok"}')

    @app.get(API + "/{code}")
    async def get_one(code: str) -> Response:
        return answer(await stack._run(stack.plan["get"], 0, {CODE: code}))

    @app.get(API)
    async def list_or_search(request: Request) -> Response:
        name = "search" if "q" in request.query_params else "list"
        variant = int(request.headers["x-bench-variant"])
        return answer(await stack._run(stack.plan[name], variant, {}))

    @app.post(API)
    async def create(request: Request) -> Response:
        orjson.loads(await request.body())
        variant = int(request.headers["x-bench-variant"])
        return answer(await stack._run(stack.plan["create"], variant, {}), 201)

    @app.post(INTERACTIONS)
    async def interaction(request: Request) -> Response:
        data = orjson.loads(await request.body())
        variant = int(request.headers["x-bench-variant"])
        slots = {CODE: data["customer_code"]}
        return answer(await stack._run(stack.plan["interaction"], variant, slots), 201)

    @app.post(WEBHOOKS + "{slug}")
    async def webhook(slug: str, request: Request) -> Response:
        slots = webhook_slots(orjson.loads(await request.body()), request.headers["webhook-id"])
        variant = int(request.headers["x-bench-variant"])
        return answer(await stack._run(stack.plan["webhook"], variant, slots))

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m bench.stack_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--framework", action="store_true", help="the same work behind a bare FastAPI app"
    )
    args = parser.parse_args(argv)
    # The same server settings `crm serve` uses.
    uvicorn.run(
        "bench.stack_app:" + ("create_framework_app" if args.framework else "create_app"),
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
