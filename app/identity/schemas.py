"""Duplicate candidate and merge API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class CandidateCustomer(BaseModel):
    code: str
    name: str


class DuplicateCandidateRead(BaseModel):
    id: int
    score: float = Field(description="0–1, higher is more likely the same customer")
    reason: str
    created_at: datetime
    customers: list[CandidateCustomer]


class DuplicatePage(BaseModel):
    items: list[DuplicateCandidateRead]
    next_cursor: str | None


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    survivor: Annotated[str, Field(min_length=1, max_length=20)]
    merged: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=20)]], Field(min_length=1, max_length=20)
    ]


class ScanResult(BaseModel):
    new_candidates: int
