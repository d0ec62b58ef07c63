"""Record the round trips each endpoint makes to PostgreSQL by running the real app in-process.

The app is built with its own factory and lifespan (so its engine, pool pre-ping and session
handling are the ones in production); SQLAlchemy's `after_cursor_execute` event gives each
statement with its arguments exactly as handed to asyncpg, and an asyncpg connection subclass
records what bypasses the cursor: BEGIN/COMMIT/ROLLBACK and the pre-ping's empty query.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event

from bench.plan import CODE, Endpoint, Sets, Slot, Step

# The request being recorded: its steps and, per step, (column names, first row) of what it
# returned (None when nothing). A context variable, so only the request's own statements are
# recorded: background tasks of the app (the audit sealer) started before it and see None.
_Recording = tuple[list[Step], list[tuple[list[str], list[Any]] | None]]
_current: ContextVar[_Recording | None] = ContextVar("bench_capture", default=None)


class RecordingConnection(asyncpg.Connection):  # type: ignore[misc]
    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:  # noqa: ASYNC109
        rec = _current.get()
        if rec is not None and not args:
            rec[0].append(Step("control", query))
            rec[1].append(None)
        result: str = await super().execute(query, *args, timeout=timeout)
        return result

    async def fetchrow(
        self,
        query: str,
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109 (asyncpg's signature)
        record_class: Any = None,
    ) -> Any:
        rec = _current.get()
        if rec is not None and query.strip() == ";":
            rec[0].append(Step("ping", query))
            rec[1].append(None)
        return await super().fetchrow(query, *args, timeout=timeout, record_class=record_class)


def _use_recording_class(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    cparams["connection_class"] = RecordingConnection


def _record_statement(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    rec = _current.get()
    if rec is not None:
        rec[0].append(Step("sql", statement, list(parameters or ())))
        # The asyncpg adapter has fetched every row by now: keep the first one.
        rows = getattr(cursor, "_rows", None)
        first = None
        if rows and cursor.description:
            first = ([d[0] for d in cursor.description], list(rows[0]))
        rec[1].append(first)


@dataclass
class Request:
    method: str
    path: str  # with its query string
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # JSON-able
    expect: int = 200
    content: str | None = None  # the body's exact text, when it matters (a signed delivery)


@dataclass
class Captured:
    status: int
    body: Any
    steps: list[Step]
    returned: list[tuple[list[str], list[Any]] | None] = field(default_factory=list)


async def capture(database_url: str, requests: list[Request]) -> list[Captured]:
    """Send each request once to an in-process app and return what it sent to PostgreSQL."""
    from app.core.config import get_settings
    from app.core.db import to_async_url
    from app.main import create_app

    app = create_app(get_settings(), database_url=to_async_url(database_url))
    out: list[Captured] = []
    async with app.router.lifespan_context(app):
        engine = app.state.engine
        event.listen(engine.sync_engine, "do_connect", _use_recording_class)
        event.listen(engine.sync_engine, "after_cursor_execute", _record_statement)
        # Connections the start-up opened (resuming imports) predate the recording class.
        await engine.dispose()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            # The first connection runs the dialect's setup queries: keep them out.
            await client.get("/readyz")
            for req in requests:
                steps: list[Step] = []
                returned: list[tuple[list[str], list[Any]] | None] = []
                token = _current.set((steps, returned))
                try:
                    if req.content is not None:
                        r = await client.request(
                            req.method, req.path, headers=req.headers, content=req.content
                        )
                    else:
                        r = await client.request(
                            req.method, req.path, headers=req.headers, json=req.body
                        )
                finally:
                    _current.reset(token)
                if r.status_code != req.expect:
                    raise RuntimeError(
                        f"{req.method} {req.path} answered {r.status_code}: {r.text[:500]}"
                    )
                out.append(Captured(r.status_code, r.json(), steps, returned))
    return out


def top_level(sql: str) -> str:
    """The statement with every parenthesised part emptied: what is left is its outer shape."""
    out, depth, quoted = [], 0, False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        if not quoted and ch == "(":
            depth += 1
            if depth == 1:
                out.append("(")
        elif not quoted and ch == ")":
            depth -= 1
            if depth == 0:
                out.append(")")
        elif depth == 0:
            out.append(ch)
    return " ".join("".join(out).split())


def describe(sql: str) -> tuple[str, str, int]:
    """(verb, table, columns returned) of a statement, read from its outer shape."""
    shape = top_level(sql)
    verb = re.search(r"\b(SELECT|INSERT|UPDATE|DELETE)\b", shape, re.IGNORECASE)
    if verb is None:
        return shape.split(" ", 1)[0], "", 0
    rest = shape[verb.start() :]
    table = re.search(r"\b(?:FROM|INTO|UPDATE)\s+([\w.\"]+)", rest, re.IGNORECASE)
    columns = 0
    returning = re.search(r"\bRETURNING\b(.*)", rest, re.IGNORECASE)
    if returning:
        columns = returning.group(1).count(",") + 1
    elif verb.group(1).upper() == "SELECT":
        listed = re.split(r"\bFROM\b", rest[6:], maxsplit=1, flags=re.IGNORECASE)[0]
        columns = listed.count(",") + 1
    return verb.group(1).upper(), table.group(1) if table else "", columns


def main_step(steps: list[Step]) -> int:
    """The step whose rows form the response: the one returning the most columns."""
    candidates = [(describe(s.sql)[2], i) for i, s in enumerate(steps) if s.kind == "sql"]
    if not candidates or max(candidates)[0] == 0:
        raise RuntimeError("no statement returns rows")
    return max(candidates)[1]


def with_code_slot(steps: list[Step], code: str) -> list[Step]:
    """Replace every argument equal to `code` with the code slot."""
    return [
        Step(
            s.kind, s.sql, [Slot(CODE) if _same(a, code) else a for a in s.args], s.code_day, s.sets
        )
        for s in steps
    ]


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def with_slots(captured: Captured, inputs: dict[str, Any], results: dict[str, Any]) -> list[Step]:
    """The steps with per-request values made slots.

    `inputs`: values the request carries (replaced wherever they appear); `results`: values a
    statement returns (the first statement whose first row holds one sets the slot, and the
    value is replaced in the statements after it). Values are matched by type and equality:
    the bench picks them large enough (ids > 1000, inbox ids > 10^9) not to meet others.
    """
    out: list[Step] = []
    setters: dict[str, int] = {}
    for i, step in enumerate(captured.steps):

        def sub(a: Any) -> Any:
            if isinstance(a, list):
                return [sub(x) for x in a]
            for name, value in inputs.items():
                if _same(a, value):
                    return Slot(name)
            for name, value in results.items():
                if name in setters and _same(a, value):
                    return Slot(name)
            return a

        new = Step(step.kind, step.sql, [sub(a) for a in step.args], step.code_day)
        returned = captured.returned[i] if i < len(captured.returned) else None
        if returned is not None:
            columns, row = returned
            for name, value in results.items():
                hit = next((k for k, v in enumerate(row) if _same(v, value)), None)
                if name not in setters and hit is not None:
                    setters[name] = i
                    new.sets.append(Sets(name, columns[hit], hit))
        out.append(new)
    missing = [name for name in results if name not in setters]
    if missing:
        raise RuntimeError(f"no statement returns the value of slot(s) {missing}")
    return out


def counter_returns_code(steps: list[Step]) -> bool:
    """The build takes the code and inserts the customer in one statement, which returns the
    code (a result slot); older builds ran the counter alone (`mark_counter`)."""
    return any(
        "customer_code_counters" in s.sql and "INSERT INTO customers" in s.sql for s in steps
    )


def mark_counter(steps: list[Step], *, required: bool) -> None:
    """The code comes from the per-day counter; mark the statement that returns it."""
    if counter_returns_code(steps):
        return
    counter = [s for s in steps if "customer_code_counters" in s.sql]
    if not counter and not required:
        return
    if len(counter) != 1 or not isinstance(counter[0].args[0], date):
        raise RuntimeError("cannot find the code counter statement of a create")
    counter[0].code_day = f"{counter[0].args[0]:%Y%m%d}"


def endpoint(
    name: str,
    method: str,
    captured: list[Captured],
    *,
    code: str | None,
    slotted: list[list[Step]] | None = None,
) -> Endpoint:
    """`code`: the customer code in every variant (get, create); `slotted`: variants whose
    slots are already placed (`with_slots`), for the endpoints with several per-request values.
    """
    variants = slotted if slotted is not None else [c.steps for c in captured]
    if code is not None:
        variants = [with_code_slot(v, code) for v in variants]
    if method == "POST":
        for steps in variants:
            mark_counter(steps, required=name == "create")
    results = [main_step(v) for v in variants]
    return Endpoint(
        name=name,
        method=method,
        variants=variants,
        result_step=results[0],
        single=name not in {"list", "search"},
        result_steps=results if len(set(results)) > 1 else [],
    )
