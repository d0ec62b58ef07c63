"""Webhook source and inbox API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Where a mapped value may go. `chat.*` paths apply to chat sources.
MAPPING_TARGETS = {
    "customer.name": "company or person name",
    "customer.kind": "enterprise or individual",
    "customer.phone": "phone, any format",
    "customer.email": "email",
    "customer.province": "province",
    "customer.city": "city",
    "customer.industry": "industry name or code",
    "customer.core_needs": "what they asked for",
    "customer.budget": "budget",
    "contact.name": "contact person",
    "contact.title": "contact position",
    "contact.phone": "contact phone",
    "contact.email": "contact email",
    "contact.wechat_id": "WeChat id",
    "external_id": "the sender's id for this person (matched on later events)",
    "interaction.summary": "text of the form or message",
    "interaction.occurred_at": "event time (ISO 8601); defaults to receipt time",
    "chat.conversation_id": "conversation id",
    "chat.messages": "list of messages",
    "message.text": "a message's text (path inside one message)",
    "message.at": "a message's time (path inside one message)",
    "message.from": "who wrote it: 'customer'/'visitor' → inbound, else outbound",
}

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,39}$")]
Channel = Literal["website_form", "chat", "wechat", "email", "phone", "other"]


class Assignment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["none", "fixed", "round_robin", "by_region", "by_industry"] = "none"
    owner_id: int | None = None
    rules: dict[str, int] = Field(default={}, description="province/city or industry → user id")


class _Mapping(BaseModel):
    mapping: dict[str, Annotated[str, Field(min_length=1, max_length=200)]] = {}

    @field_validator("mapping")
    @classmethod
    def _known_targets(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(MAPPING_TARGETS))
        if unknown:
            raise ValueError(f"unknown targets {unknown}; allowed: {sorted(MAPPING_TARGETS)}")
        return value


class WebhookSourceCreate(_Mapping):
    model_config = ConfigDict(extra="forbid")
    slug: Slug
    name: Annotated[str, Field(min_length=1, max_length=100)]
    kind: Literal["form", "chat"]
    channel: Channel = "website_form"
    source_channel: str | None = Field(default=None, description="customer source for new ones")
    chat_mode: Literal["conversation", "message"] = "conversation"
    assignment: Assignment = Assignment()


class WebhookSourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    mapping: dict[str, str] | None = None
    channel: Channel | None = None
    source_channel: str | None = None
    chat_mode: Literal["conversation", "message"] | None = None
    assignment: Assignment | None = None
    active: bool | None = None
    drop_old_secrets: bool = Field(default=False, description="keep only the newest secret")

    @field_validator("mapping")
    @classmethod
    def _known_targets(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else _Mapping._known_targets(value)


class WebhookSourceRead(BaseModel):
    id: int
    slug: str
    name: str
    kind: str
    channel: str
    source_channel: str | None
    chat_mode: str
    mapping: dict[str, str]
    assignment: dict[str, Any]
    active: bool
    secrets_active: int
    created_at: datetime


class WebhookSourceCreated(WebhookSourceRead):
    secret: str = Field(description="Shown once: sign deliveries with it (Standard Webhooks).")


class InboxEvent(BaseModel):
    id: int
    source: str
    webhook_id: str
    received_at: datetime
    status: str
    attempts: int
    error: str | None
    customer_code: str | None
    processed_at: datetime | None


class InboxPage(BaseModel):
    items: list[InboxEvent]
    next_cursor: str | None


class DeliveryResult(BaseModel):
    status: Literal["processed", "duplicate", "failed"]
    inbox_id: int | None = None
    customer_code: str | None = None
