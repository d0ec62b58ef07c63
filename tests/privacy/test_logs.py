"""Logs and error bodies never carry personal data or secrets (SPEC §12, §14)."""

from __future__ import annotations

import io
import logging

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from app.core.logging import JsonFormatter, configure_logging
from tests.factories import DEFAULT_PASSWORD, make_user

PII = ["13812345678", "zhang.san@example.cn", "张三丰", "11010519491231002X"]


async def test_logs_and_problem_bodies_hold_no_pii(client: httpx.AsyncClient, engine: AsyncEngine):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    bodies: list[str] = []
    try:
        m = await make_user(engine, role=Role.manager)
        ok = await client.post(
            "/api/v1/customers",
            json={"name": "张三丰", "kind": "individual", "phone": PII[0], "email": PII[1]},
            headers=m.headers,
        )
        code = ok.json()["code"]
        for r in (
            await client.get("/api/v1/customers", params={"q": PII[0]}, headers=m.headers),
            await client.get("/api/v1/customers", params={"q": "张三丰"}, headers=m.headers),
            await client.post(
                "/api/v1/customers",
                json={"name": "张三丰", "phone": "1381234567899999"},
                headers=m.headers,
            ),
            await client.patch(
                f"/api/v1/customers/{code}", json={"id_number": PII[3]}, headers=m.headers
            ),
            await client.post(
                "/api/v1/auth/token", data={"username": PII[1], "password": DEFAULT_PASSWORD}
            ),
            await client.get("/api/v1/customers", params={"id_number": PII[3]}, headers=m.headers),
        ):
            if r.status_code >= 400:
                bodies.append(r.text)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logged = stream.getvalue()
    assert '"route"' in logged  # the access log did run
    for value in [*PII, DEFAULT_PASSWORD]:
        assert value not in logged, value
        for body in bodies:
            assert value not in body, (value, body)


def test_uvicorn_builds_no_access_line_of_its_own() -> None:
    """uvicorn's access line carries the raw path and query string (phone numbers, names):
    after configure_logging its logger has no handler to reach, so uvicorn never builds it."""
    root = logging.getLogger()
    access = logging.getLogger("uvicorn.access")
    saved = (root.handlers[:], root.level, access.disabled, access.propagate, access.handlers[:])
    try:
        access.addHandler(logging.NullHandler())  # as uvicorn's own log config leaves it
        configure_logging("INFO")
        assert root.handlers  # our JSON lines still go out
        assert not access.hasHandlers()  # what uvicorn checks before building its line
    finally:
        root.handlers[:], level, access.disabled, access.propagate, access.handlers[:] = saved
        root.setLevel(level)


async def test_no_tracing_spans_even_with_a_tracer_provider_configured(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch
):
    """FastAPI's native OpenTelemetry spans record the raw path and query string (a phone
    number searched for); the app keeps them off whatever provider the process configures."""
    from opentelemetry import trace

    asked: list[str] = []

    class RecordingProvider(trace.TracerProvider):
        def get_tracer(self, name, *args, **kwargs):  # type: ignore[no-untyped-def]
            asked.append(name)
            return trace.NoOpTracer()

    monkeypatch.setattr(trace, "get_tracer_provider", RecordingProvider)
    m = await make_user(engine, role=Role.manager)
    r = await client.get("/api/v1/customers", params={"q": PII[0]}, headers=m.headers)
    assert r.status_code == 200
    assert asked == []
