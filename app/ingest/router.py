"""Webhook delivery (signed, public) and the admin side: sources and the inbox."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request, Response

from app.auth.dependencies import Public, require
from app.auth.principal import Principal
from app.core.db import SessionDep
from app.core.errors import ValidationFailed
from app.core.hotroutes import HotDelivery
from app.core.responses import FastJSONResponse
from app.ingest import service
from app.ingest.schemas import (
    DeliveryResult,
    InboxPage,
    WebhookSourceCreate,
    WebhookSourceCreated,
    WebhookSourceRead,
    WebhookSourceUpdate,
)

router = APIRouter(tags=["webhooks"])


@router.post(
    "/webhooks/{slug}",
    response_model=DeliveryResult,
    dependencies=[Public],
    responses={
        202: {"description": "Stored but processing failed; an admin can retry it"},
        401: {"description": "Bad or stale signature"},
        404: {"description": "No such source"},
    },
)
async def deliver(
    slug: str,
    request: Request,
    webhook_id: Annotated[str | None, Header(max_length=200)] = None,
    webhook_timestamp: Annotated[str | None, Header(max_length=20)] = None,
    webhook_signature: Annotated[str | None, Header(max_length=2000)] = None,
) -> Response:
    """Receive a signed event (Standard Webhooks); stored first, then processed once."""
    body = await request.body()
    # One connection for the whole delivery, no Session around it: the source and the inbox
    # row each in a statement of its own (the event is stored, committed, before it is
    # processed), then the event's transaction (`service.run`).
    async with request.app.state.engine.connect() as conn:
        source = await service.authenticate(
            conn,
            slug,
            msg_id=webhook_id,
            timestamp=webhook_timestamp,
            signature_header=webhook_signature,
            body=body,
        )
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValidationFailed(
                "The body is not valid JSON.", "请求体不是有效的 JSON。"
            ) from exc
        assert webhook_id is not None
        inbox_id = await service.store(conn, source.id, webhook_id, payload)
        if inbox_id is None:
            return FastJSONResponse({"status": "duplicate"}, status_code=200)
        result = await service.run(conn, inbox_id, source, payload)
    return FastJSONResponse(
        result.model_dump(), status_code=202 if result.status == "failed" else 200
    )


# Deliveries are answered beside FastAPI's routing too (app.core.hotroutes), by this endpoint.
HOT_DELIVERIES = [HotDelivery(deliver)]


@router.get("/webhook-sources", response_model=list[WebhookSourceRead])
async def list_sources(
    session: SessionDep, _: Annotated[Principal, require("webhooks:admin")]
) -> list[WebhookSourceRead]:
    """Webhook sources (secrets are never shown again)."""
    return await service.list_sources(session)


@router.post(
    "/webhook-sources",
    response_model=WebhookSourceCreated,
    status_code=201,
    responses={409: {}, 422: {}},
)
async def create_source(
    body: WebhookSourceCreate,
    session: SessionDep,
    principal: Annotated[Principal, require("webhooks:admin")],
) -> WebhookSourceCreated:
    """Register a form or chat source: mapping, owner rule; its secret is in this answer only."""
    return await service.create_source(session, principal, body)


@router.get("/webhook-sources/{source_id}", response_model=WebhookSourceRead, responses={404: {}})
async def get_source(
    source_id: int, session: SessionDep, _: Annotated[Principal, require("webhooks:admin")]
) -> WebhookSourceRead:
    """One webhook source."""
    return await service.get_source(session, source_id)


@router.patch("/webhook-sources/{source_id}", response_model=WebhookSourceRead, responses={404: {}})
async def update_source(
    source_id: int,
    body: WebhookSourceUpdate,
    session: SessionDep,
    principal: Annotated[Principal, require("webhooks:admin")],
) -> WebhookSourceRead:
    """Change mapping, owner rule or channel; deactivate; drop secrets older than the newest."""
    return await service.update_source(session, principal, source_id, body)


@router.post(
    "/webhook-sources/{source_id}/rotate-secret",
    response_model=WebhookSourceCreated,
    responses={404: {}},
)
async def rotate_secret(
    source_id: int, session: SessionDep, principal: Annotated[Principal, require("webhooks:admin")]
) -> WebhookSourceCreated:
    """Issue a new secret; the previous one stays valid until dropped."""
    return await service.rotate_secret(session, principal, source_id)


@router.get("/webhook-inbox", response_model=InboxPage)
async def list_inbox(
    session: SessionDep,
    _: Annotated[Principal, require("webhooks:admin")],
    status: Annotated[str | None, Query(pattern="^(received|processed|failed)$")] = None,
    source_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Response:
    """Stored events, newest first; failed ones carry their error."""
    return FastJSONResponse(
        await service.list_inbox(
            session, status=status, source_id=source_id, limit=limit, cursor=cursor
        )
    )


@router.post("/webhook-inbox/{event_id}/retry", response_model=DeliveryResult, responses={404: {}})
async def retry_event(
    event_id: int, request: Request, _: Annotated[Principal, require("webhooks:admin")]
) -> Response:
    """Process a stored event again (after fixing the source's mapping, say)."""
    async with request.app.state.engine.connect() as conn:
        result = await service.run(conn, event_id)
    return FastJSONResponse(
        result.model_dump(), status_code=202 if result.status == "failed" else 200
    )
