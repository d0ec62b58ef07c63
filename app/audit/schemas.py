"""Audit API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str | None
    changes: dict[str, Any]
    request_id: str | None
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None


class AuditVerification(BaseModel):
    ok: bool
    rows_checked: int
    first_broken_id: int | None
    reason: str | None
