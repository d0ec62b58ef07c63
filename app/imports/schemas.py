"""Import job shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

DuplicatePolicy = Literal["skip", "update", "merge"]


class ImportJobRead(BaseModel):
    """Counts are rows of the sheet (blank rows excluded); `percent` grows while rows are read."""

    id: int
    status: Literal["queued", "running", "succeeded", "failed"]
    dry_run: bool
    duplicate_policy: DuplicatePolicy
    file_name: str
    file_format: Literal["csv", "xlsx"]
    encoding: str | None
    rows_read: int
    imported: int = Field(description="New customers (would be created, in a dry run).")
    updated: int = Field(description="Existing customers changed by a row.")
    skipped: int = Field(description="Duplicates under the skip policy, or rows changing nothing.")
    failed: int = Field(description="Rows not imported; the error report says why.")
    warnings: int
    percent: int
    attempts: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    errors_url: str


class ImportJobPage(BaseModel):
    items: list[ImportJobRead]
    next_cursor: str | None


class ImportIssueRead(BaseModel):
    row: int | None = Field(description="Sheet row number (the header is row 1); null: the file.")
    column: str | None
    value: str | None
    reason: str
    level: Literal["error", "warning"]


class ImportIssuePage(BaseModel):
    items: list[ImportIssueRead]
    next_cursor: str | None
