"""Consent and data-subject API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Purpose = Literal["marketing", "sensitive_data", "data_sharing", "profiling", "service"]


class ConsentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    purpose: Purpose
    scope: Annotated[str, Field(max_length=500)] | None = None
    granted_at: AwareDatetime | None = Field(default=None, description="Defaults to now")
    channel: Annotated[str, Field(min_length=1, max_length=30)] = Field(
        description="Where it was given: website_form, paper, phone, wechat, …"
    )
    evidence: Annotated[str, Field(max_length=2000)] | None = Field(
        default=None, description="A reference: document id, recording id, form submission id"
    )


class ConsentWithdraw(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(max_length=500)] | None = None


class ConsentRead(BaseModel):
    id: int
    purpose: str
    scope: str | None
    granted_at: datetime
    channel: str
    evidence: str | None
    withdrawn_at: datetime | None
    withdrawal_reason: str | None
    created_by: str
    active: bool


class RevealRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: Annotated[list[Literal["id_number", "bank_account"]], Field(min_length=1)]


class ErasureResult(BaseModel):
    code: str
    erased_at: datetime
    scrubbed: dict[str, int]
