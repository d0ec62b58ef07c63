"""Saved segment API shapes: a name, a CustomerFilter exactly as the customer list takes it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.customers.schemas import CustomerFilter

SegmentName = Annotated[str, Field(min_length=1, max_length=100)]
Description = Annotated[str, Field(max_length=1000)]

FILTER_DOC = (
    "The customer list's filter (GET /customers query parameters as JSON, lists as arrays). "
    '`owner: ["me"]` means whoever reads the segment.'
)


class _Write(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SegmentCreate(_Write):
    name: SegmentName = Field(description="Unique among your segments, whatever the letter case.")
    description: Description | None = None
    filter: CustomerFilter = Field(default_factory=CustomerFilter, description=FILTER_DOC)
    shared: bool = Field(default=False, description="Visible to everyone, or to you only.")


class SegmentUpdate(_Write):
    """Only the fields sent change; a filter sent replaces the whole filter."""

    name: SegmentName | None = None
    description: Description | None = None
    filter: CustomerFilter | None = Field(default=None, description=FILTER_DOC)
    shared: bool | None = None


class SegmentRead(BaseModel):
    id: int
    name: str
    description: str | None
    filter: CustomerFilter
    shared: bool
    owner: str = Field(description="Who owns it, e.g. `user:5`.")
    created_at: datetime
    updated_at: datetime
    updated_by: str | None


class SegmentDetail(SegmentRead):
    count: int | None = Field(
        description="Members you may see, counted now (null without customers:read)."
    )


class SegmentPage(BaseModel):
    items: list[SegmentRead]
    next_cursor: str | None
