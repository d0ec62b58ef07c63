"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.auth.dependencies import Public
from app.core.errors import ServiceUnavailable

router = APIRouter(tags=["operations"], dependencies=[Public])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Database unreachable"}})
async def readyz(request: Request) -> dict[str, str]:
    """The process can reach its database."""
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise ServiceUnavailable(headers={"Retry-After": "2"}) from exc
    return {"status": "ready"}


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    """Prometheus metrics of this process."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
