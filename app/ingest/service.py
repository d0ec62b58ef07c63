"""Webhook ingestion: verify, store in the inbox first, then resolve identity and record.

An event is stored (and committed) before it is processed, so nothing a sender delivered is
lost: a failure leaves it in the inbox with its error for an admin to retry. A replayed
`webhook-id` finds its inbox row and has no second effect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.audit import service as audit
from app.auth.principal import Principal
from app.core.db import Writer
from app.core.errors import (
    AppError,
    Conflict,
    NotFound,
    Unauthorized,
    ValidationFailed,
    field_error,
)
from app.core.pagination import decode_cursor, encode_cursor
from app.customers import repository as customer_repo
from app.customers import service as customers
from app.customers.industries import resolve_industry
from app.customers.normalize import normalize_phone
from app.customers.schemas import CustomerCreate
from app.identity import service as identity
from app.ingest import signature
from app.ingest.schemas import (
    DeliveryResult,
    WebhookSourceCreate,
    WebhookSourceCreated,
    WebhookSourceRead,
    WebhookSourceUpdate,
)
from app.models.customer import Customer
from app.models.identity import WebhookInbox, WebhookSource

C = Customer.__table__.c


# ---- sources ---------------------------------------------------------------------------------


def _read(s: WebhookSource) -> WebhookSourceRead:
    return WebhookSourceRead(
        id=s.id,
        slug=s.slug,
        name=s.name,
        kind=s.kind,
        channel=s.channel,
        source_channel=s.source_channel,
        chat_mode=s.chat_mode,
        mapping=dict(s.mapping),
        assignment=dict(s.assignment),
        active=s.active,
        secrets_active=len(s.secrets),
        created_at=s.created_at,
    )


async def _source(session: AsyncSession, source_id: int) -> WebhookSource:
    s = await session.get(WebhookSource, source_id)
    if s is None:
        raise NotFound("No such webhook source.", "Webhook 来源不存在。")
    return s


async def create_source(
    session: AsyncSession, principal: Principal, data: WebhookSourceCreate
) -> WebhookSourceCreated:
    if await session.scalar(select(WebhookSource.id).where(WebhookSource.slug == data.slug)):
        raise Conflict(errors=[field_error("slug", "exists", "duplicate")])
    secret = signature.new_secret()
    s = WebhookSource(
        slug=data.slug,
        name=data.name,
        kind=data.kind,
        channel=data.channel,
        source_channel=data.source_channel,
        chat_mode=data.chat_mode,
        mapping=data.mapping,
        assignment=data.assignment.model_dump(),
        secrets=[secret],
    )
    session.add(s)
    await session.flush()
    await session.refresh(s)
    await audit.record(
        session,
        actor=principal,
        action="webhook_source.create",
        entity_type="webhook_source",
        entity_id=s.slug,
    )
    return WebhookSourceCreated(**_read(s).model_dump(), secret=secret)


async def list_sources(session: AsyncSession) -> list[WebhookSourceRead]:
    rows = await session.scalars(select(WebhookSource).order_by(WebhookSource.id))
    return [_read(s) for s in rows.all()]


async def get_source(session: AsyncSession, source_id: int) -> WebhookSourceRead:
    return _read(await _source(session, source_id))


async def update_source(
    session: AsyncSession, principal: Principal, source_id: int, data: WebhookSourceUpdate
) -> WebhookSourceRead:
    s = await _source(session, source_id)
    patch = data.model_dump(exclude_unset=True)
    changed: list[str] = []
    for key in ("name", "mapping", "channel", "source_channel", "chat_mode", "active"):
        if key in patch and patch[key] is not None:
            setattr(s, key, patch[key])
            changed.append(key)
    if data.assignment is not None:
        s.assignment = data.assignment.model_dump()
        changed.append("assignment")
    if data.drop_old_secrets and len(s.secrets) > 1:
        s.secrets = [s.secrets[-1]]
        changed.append("secrets")
    await session.flush()
    await session.refresh(s)
    await audit.record(
        session,
        actor=principal,
        action="webhook_source.update",
        entity_type="webhook_source",
        entity_id=s.slug,
        changes={"changed": sorted(changed)},
    )
    return _read(s)


async def rotate_secret(
    session: AsyncSession, principal: Principal, source_id: int
) -> WebhookSourceCreated:
    """Add a new secret; the old one keeps working until dropped (zero-downtime rotation)."""
    s = await _source(session, source_id)
    secret = signature.new_secret()
    s.secrets = [*s.secrets[-1:], secret]
    await session.flush()
    await session.refresh(s)
    await audit.record(
        session,
        actor=principal,
        action="webhook_source.rotate_secret",
        entity_type="webhook_source",
        entity_id=s.slug,
    )
    return WebhookSourceCreated(**_read(s).model_dump(), secret=secret)


# ---- delivery --------------------------------------------------------------------------------


def pick(payload: Any, path: str) -> Any:
    """Follow a dotted path ('data.contact.0.phone') through dicts and lists."""
    current = payload
    for part in path.split("."):
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
        if current is None:
            return None
    return current


# A source as a Core row (attribute access like the ORM entity) on the delivery path.
SourceRow = Any
_SOURCE = WebhookSource.__table__
_INBOX = WebhookInbox.__table__


async def authenticate(
    session: Writer,
    slug: str,
    *,
    msg_id: str | None,
    timestamp: str | None,
    signature_header: str | None,
    body: bytes,
) -> SourceRow:
    rows = await customer_repo.raw_fetch(
        session,
        "ingest.source",
        lambda: select(_SOURCE).where(
            _SOURCE.c.slug == bindparam("slug", None, type_=_SOURCE.c.slug.type), _SOURCE.c.active
        ),
        {"slug": slug},
        transactional=False,
    )
    if not rows:
        raise NotFound("No such webhook source.", "Webhook 来源不存在。")
    source = SimpleNamespace(**rows[0])
    try:
        signature.verify(
            list(source.secrets),
            msg_id=msg_id,
            timestamp=timestamp,
            signature_header=signature_header,
            body=body,
        )
    except signature.SignatureError as exc:
        raise Unauthorized(f"Webhook signature rejected: {exc}.", "Webhook 签名校验失败。") from exc
    return source


async def store(session: Writer, source_id: int, msg_id: str, payload: Any) -> int | None:
    """Insert into the inbox; None when this webhook-id was delivered before. Runs on its own,
    committed before the event's transaction begins."""
    rows = await customer_repo.raw_fetch(
        session,
        "ingest.store",
        _STORE_SQL,
        {"source_id": source_id, "webhook_id": msg_id, "payload": orjson.dumps(payload).decode()},
        transactional=False,
    )
    return int(rows[0]["id"]) if rows else None


_STORE_SQL = text(
    "INSERT INTO webhook_inbox (source_id, webhook_id, payload) "
    "VALUES (:source_id, :webhook_id, CAST(:payload AS jsonb)) "
    "ON CONFLICT (source_id, webhook_id) DO NOTHING RETURNING id"
)


def _principal(source: SourceRow) -> Principal:
    return Principal(
        kind="webhook",
        id=source.id,
        role=None,
        scopes=frozenset({"customers:write", "customers:assign", "pii:read", "contract:read"}),
    )


# The next active sales rep in turn, and the cursor moved on, in one statement. Run outside
# the request's transaction, the source row is locked for this statement only.
_ROUND_ROBIN_SQL = text(
    """
WITH reps AS (
    SELECT array_agg(id ORDER BY id) AS ids FROM users WHERE role = 'sales' AND is_active
),
turn AS (
    UPDATE webhook_sources SET rr_cursor = rr_cursor + 1
     WHERE id = :source_id AND (SELECT ids FROM reps) IS NOT NULL
    RETURNING rr_cursor
)
SELECT reps.ids[((turn.rr_cursor - 1) % cardinality(reps.ids)) + 1] AS rep FROM reps, turn
"""
)


async def _pick_owner(session: Writer, source: SourceRow, fields: dict[str, Any]) -> int | None:
    rule = source.assignment or {}
    mode = rule.get("mode", "none")
    if mode == "fixed":
        owner: int | None = rule.get("owner_id")
        return owner
    if mode in {"by_region", "by_industry"}:
        rules: dict[str, int] = rule.get("rules") or {}
        keys = (
            [fields.get("city"), fields.get("province")]
            if mode == "by_region"
            else [fields.get("industry")]
        )
        for key in keys:
            if key and key in rules:
                return rules[key]
        fallback: int | None = rule.get("owner_id")
        return fallback
    if mode == "round_robin":
        # One atomic increment per event: concurrent deliveries still spread evenly.
        rows = await customer_repo.raw_fetch(
            session,
            "ingest.round_robin",
            _ROUND_ROBIN_SQL,
            {"source_id": source.id},
            transactional=False,
        )
        return int(rows[0]["rep"]) if rows and rows[0]["rep"] is not None else None
    return None


def extract(source: SourceRow, payload: Any) -> dict[str, Any]:
    """Mapped values, by target name, from one event."""
    return {
        target: pick(payload, path)
        for target, path in (source.mapping or {}).items()
        if not target.startswith("message.")
    }


def _text(value: Any, limit: int = 2000) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:limit] or None


class _Plan:
    """What identity resolution decided for one event, before its transaction."""

    def __init__(self, values: dict[str, Any], principal: Principal) -> None:
        self.values = values
        self.principal = principal
        self.phones: list[str] = []
        self.bad_phones: list[str] = []
        self.emails: list[str] = []
        self.wechat: list[str] = []
        self.external: dict[str, str] = {}
        self.customer_id: int | None = None  # the existing customer it belongs to
        self.code: str | None = None  # else: the code taken for the new one
        self.owner: int | None = None


async def prepare(session: Writer, source: SourceRow, payload: Any) -> _Plan:
    """Identity resolution; for a new visitor, the new customer's code and owner. Runs outside
    the event's transaction (each statement on its own), so the day's code counter and the
    round-robin cursor are locked for one statement, not until the event commits."""
    if not isinstance(payload, dict):
        raise ValidationFailed(
            "The event body must be a JSON object.", "事件内容必须是 JSON 对象。"
        )
    values = extract(source, payload)
    plan = _Plan(values, _principal(source))
    raw_phones = [values.get("customer.phone"), values.get("contact.phone")]
    plan.phones = [p for p in (normalize_phone(str(x)) for x in raw_phones if x) if p]
    plan.bad_phones = [str(x) for x in raw_phones if x and not normalize_phone(str(x))]
    plan.emails = [
        str(e).strip().lower()
        for e in (values.get("customer.email"), values.get("contact.email"))
        if e
    ]
    plan.wechat = [str(w) for w in [values.get("contact.wechat_id")] if w]
    if values.get("external_id"):
        plan.external[source.slug] = str(values["external_id"])
    if plan.wechat:
        # A WeChat id identifies a person across sources, with or without a contact name.
        plan.external["wechat"] = plan.wechat[0]
    plan.customer_id = await identity.resolve(
        session,
        phones=plan.phones,
        emails=plan.emails,
        wechat_ids=plan.wechat,
        external_ids=plan.external,
    )
    if plan.customer_id is None:
        plan.code = await customer_repo.take_code(session, customers.local_today())
        industry = values.get("customer.industry")
        plan.owner = await _pick_owner(
            session,
            source,
            {
                "province": _text(values.get("customer.province"), 40),
                "city": _text(values.get("customer.city"), 40),
                "industry": resolve_industry(str(industry)) if industry else None,
            },
        )
    return plan


async def process(session: Writer, source: SourceRow, plan: _Plan) -> tuple[str, int | None]:
    """In the event's transaction: the matched customer enriched (and locked), or the new one
    created. Returns its code, and its id when its row is locked here for the interaction."""
    if plan.customer_id is not None:
        code = await _enrich(session, plan.customer_id, plan.phones, plan.emails, plan.external)
        if code is not None:
            return code, plan.customer_id
        # Deleted or merged since it was resolved: a new customer after all.
        plan.code = await customer_repo.take_code(session, customers.local_today())
    assert plan.code is not None
    code = await _create_customer(session, source, plan)
    if plan.external:
        await session.execute(
            update(Customer).where(C.code == code).values(external_ids=plan.external)
        )
    return code, None


# Lock the matched customer, fill what it lacked (phone, email, the sender's ids; nothing is
# overwritten), return its code: one round trip. No row: it is no longer live.
_ENRICH_SQL = text(
    """
WITH cur AS (
    SELECT id, code, phone, email, external_ids
      FROM customers WHERE id = :id AND deleted_at IS NULL
       FOR UPDATE
),
upd AS (
    UPDATE customers c
       SET phone = coalesce(cur.phone, CAST(:phone AS text)),
           email = coalesce(cur.email, CAST(:email AS text)),
           external_ids = CASE WHEN CAST(:ext AS jsonb) IS NULL THEN cur.external_ids
                               ELSE CAST(:ext AS jsonb) || coalesce(cur.external_ids, '{}')
                          END,
           version = c.version + 1,
           updated_at = now()
      FROM cur
     WHERE c.id = cur.id
       AND ((cur.phone IS NULL AND CAST(:phone AS text) IS NOT NULL)
         OR (cur.email IS NULL AND CAST(:email AS text) IS NOT NULL)
         OR (CAST(:ext AS jsonb) IS NOT NULL
             AND NOT coalesce(cur.external_ids, '{}') ?& CAST(:keys AS text[])))
)
SELECT code FROM cur
"""
)


async def _enrich(
    session: Writer,
    customer_id: int,
    phones: list[str],
    emails: list[str],
    external: dict[str, str],
) -> str | None:
    """A matched customer gains what it lacked (phone, email, the sender's id); nothing is
    overwritten. Returns its code, None when it is no longer live."""
    rows = await customer_repo.raw_fetch(
        session,
        "ingest.enrich",
        _ENRICH_SQL,
        {
            "id": customer_id,
            "phone": phones[0] if phones else None,
            "email": emails[0] if emails else None,
            "ext": orjson.dumps(external).decode() if external else None,
            "keys": list(external),
        },
    )
    return str(rows[0]["code"]) if rows else None


async def _create_customer(session: Writer, source: SourceRow, plan: _Plan) -> str:
    values, phones, emails, wechat = plan.values, plan.phones, plan.emails, plan.wechat
    contact_name = _text(values.get("contact.name"), 60)
    name = (
        _text(values.get("customer.name"), 200) or contact_name or (phones[0] if phones else None)
    )
    if not name:
        name = emails[0] if emails else "访客"
    kind = values.get("customer.kind") or (
        "enterprise" if values.get("customer.name") else "individual"
    )
    fields: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "phone": phones[0] if phones else None,
        "email": emails[0] if emails else None,
        "core_needs": _text(values.get("customer.core_needs")),
        "region": {
            "province": _text(values.get("customer.province"), 40),
            "city": _text(values.get("customer.city"), 40),
        },
    }
    industry = values.get("customer.industry")
    if industry and resolve_industry(str(industry)):
        fields["industry"] = str(industry)
    if values.get("customer.budget") is not None:
        fields["budget"] = values["customer.budget"]
    if contact_name:
        fields["contacts"] = [
            {
                "name": contact_name,
                "title": _text(values.get("contact.title"), 60),
                "phones": phones[1:2] if len(phones) > 1 else [],
                "wechat_id": wechat[0] if wechat else None,
            }
        ]
    if source.source_channel:
        fields["source"] = source.source_channel
    if plan.owner is not None:
        fields["owner_id"] = plan.owner
    data = CustomerCreate.model_validate({k: v for k, v in fields.items() if v is not None})
    created = await customers.create(session, plan.principal, data, code=plan.code)
    if plan.bad_phones:
        await session.execute(
            update(Customer)
            .where(C.code == created["code"])
            .values(flags=func.array_append(C.flags, "to_verify"))
        )
    return str(created["code"])


def _interaction_drafts(
    source: SourceRow, payload: Any, values: dict[str, Any], bad_phones: list[str]
) -> list[dict[str, Any]]:
    received = datetime.now(UTC)
    occurred = _parse_time(values.get("interaction.occurred_at")) or received
    note = f"（无法识别的电话：{'、'.join(bad_phones)}）" if bad_phones else ""
    if source.kind == "chat":
        messages = values.get("chat.messages") or []
        if not isinstance(messages, list):
            raise ValidationFailed("chat.messages must be a list.", "chat.messages 必须是列表。")
        mapping = source.mapping or {}
        parsed: list[dict[str, Any]] = []
        for m in messages:
            text = _text(pick(m, mapping.get("message.text", "text")), 2000)
            if not text:
                continue
            author = str(pick(m, mapping.get("message.from", "from")) or "customer").lower()
            parsed.append(
                {
                    "text": text,
                    "at": _parse_time(pick(m, mapping.get("message.at", "at"))) or occurred,
                    "direction": "inbound"
                    if author in {"customer", "visitor", "user"}
                    else "outbound",
                }
            )
        if not parsed:
            raise ValidationFailed("The conversation has no messages.", "会话中没有消息。")
        if source.chat_mode == "message":
            return [
                {
                    "channel": source.channel,
                    "kind": "inquiry",
                    "direction": p["direction"],
                    "occurred_at": p["at"],
                    "summary": p["text"] + note,
                }
                for p in parsed
            ]
        lines = "\n".join(
            ("客户：" if p["direction"] == "inbound" else "客服：") + p["text"] for p in parsed
        )
        return [
            {
                "channel": source.channel,
                "kind": "inquiry",
                "direction": "inbound",
                "occurred_at": parsed[0]["at"],
                "summary": (lines + note)[:5000],
            }
        ]
    summary = _text(values.get("interaction.summary"), 5000) or _text(
        values.get("customer.core_needs"), 5000
    )
    return [
        {
            "channel": source.channel,
            "kind": "inquiry",
            "direction": "inbound",
            "occurred_at": occurred,
            "summary": ((summary or "表单提交") + note)[:5000],
        }
    ]


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _Superseded(Exception):
    """The event was processed meanwhile by a concurrent retry: this one's work rolls back."""


_RETRY_EVENT = select(
    _INBOX.c.source_id,
    _INBOX.c.payload,
    _INBOX.c.status,
    select(C.code).where(C.id == _INBOX.c.customer_id).scalar_subquery().label("code"),
).where(_INBOX.c.id == bindparam("id", None, type_=_INBOX.c.id.type))
_SOURCE_BY_ID = select(_SOURCE).where(
    _SOURCE.c.id == bindparam("id", None, type_=_SOURCE.c.id.type)
)


async def run(
    conn: AsyncConnection,
    inbox_id: int,
    source: SourceRow | None = None,
    payload: Any = None,
) -> DeliveryResult:
    """Process one stored event in its own transaction; on failure keep it with its error.

    `conn` is a bare connection with no transaction begun (a delivery has just stored the
    event on it, each statement committed on its own). A delivery passes the source and
    payload it just stored; a retry loads them.

    The event's transaction is begun explicitly (`conn.begin()`): the hot statements run on
    the driver below SQLAlchemy, so only a transaction SQLAlchemy began commits them."""
    from app.ingest import recorder

    if source is None:  # a retry: the stored event and its source
        events = await customer_repo.raw_fetch(
            conn, "ingest.retry_event", _RETRY_EVENT, {"id": inbox_id}, transactional=False
        )
        if not events:
            raise NotFound()
        event = events[0]
        if event["status"] == "processed":
            return DeliveryResult(
                status="duplicate", inbox_id=inbox_id, customer_code=event["code"]
            )
        sources = await customer_repo.raw_fetch(
            conn,
            "ingest.source_by_id",
            _SOURCE_BY_ID,
            {"id": event["source_id"]},
            transactional=False,
        )
        source = SimpleNamespace(**sources[0])
        payload = event["payload"]
    try:
        async with customer_repo.outside_transaction(conn):
            plan = await prepare(conn, source, payload)
        async with conn.begin():
            code, customer_id = await process(conn, source, plan)
            await recorder.record(
                conn,
                plan.principal,
                code,
                _interaction_drafts(source, payload, plan.values, plan.bad_phones),
                customer_id=customer_id,
            )
            done = await customer_repo.raw_fetch(
                conn,
                "ingest.processed",
                _PROCESSED_SQL,
                {"id": inbox_id, "customer_id": customer_id, "code": code},
            )
            if not done:
                raise _Superseded
        return DeliveryResult(status="processed", inbox_id=inbox_id, customer_code=code)
    except _Superseded:
        return DeliveryResult(status="duplicate", inbox_id=inbox_id)
    except Exception as exc:
        # The event's transaction, if it had begun, has rolled back.
        reason = _describe(exc)
        if conn.in_transaction():
            await conn.rollback()
        async with conn.begin():
            await conn.execute(
                update(WebhookInbox)
                .where(WebhookInbox.id == inbox_id)
                .values(status="failed", error=reason, attempts=WebhookInbox.attempts + 1)
            )
        if isinstance(exc, AppError | ValueError | KeyError | TypeError):
            return DeliveryResult(status="failed", inbox_id=inbox_id)
        raise


# The event done, unless a concurrent retry did it first (then this one rolls back).
_PROCESSED_SQL = text(
    """
UPDATE webhook_inbox
   SET status = 'processed', attempts = attempts + 1, error = NULL, processed_at = now(),
       customer_id = coalesce(CAST(:customer_id AS bigint),
                              (SELECT id FROM customers WHERE code = CAST(:code AS text)))
 WHERE id = :id AND status <> 'processed'
RETURNING id
"""
)


def _describe(exc: Exception) -> str:
    """An error note without payload values (they can be personal data)."""
    if isinstance(exc, AppError):
        fields = ", ".join(f"{e['field']}: {e['message']}" for e in exc.errors or [])
        return f"{type(exc).__name__}: {exc.detail_en}" + (f" ({fields})" if fields else "")
    return type(exc).__name__


# ---- inbox admin -----------------------------------------------------------------------------


async def list_inbox(
    session: AsyncSession,
    *,
    status: str | None,
    source_id: int | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    after = decode_cursor(cursor, 1)
    stmt = (
        select(WebhookInbox, WebhookSource.slug, C.code)
        .join(WebhookSource, WebhookSource.id == WebhookInbox.source_id)
        .outerjoin(Customer, C.id == WebhookInbox.customer_id)
        .order_by(WebhookInbox.id.desc())
        .limit(limit + 1)
    )
    if status:
        stmt = stmt.where(WebhookInbox.status == status)
    if source_id:
        stmt = stmt.where(WebhookInbox.source_id == source_id)
    if after:
        stmt = stmt.where(WebhookInbox.id < int(after[0]))
    rows = (await session.execute(stmt)).all()
    items = [
        {
            "id": e.id,
            "source": slug,
            "webhook_id": e.webhook_id,
            "received_at": e.received_at,
            "status": e.status,
            "attempts": e.attempts,
            "error": e.error,
            "customer_code": code,
            "processed_at": e.processed_at,
        }
        for e, slug, code in rows[:limit]
    ]
    next_cursor = encode_cursor([items[-1]["id"]]) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}
