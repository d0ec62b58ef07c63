"""Segmentation API shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from app.segments.rules import SegmentRules


class SweepResult(BaseModel):
    cause: str
    rule_version: int
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    customers_changed: int
    tier_changes: int
    rfm_changed: int
    released: int
    flagged_for_erasure: int = 0


class RulesRead(BaseModel):
    version: int
    rules: SegmentRules
    created_at: datetime
    created_by: str


class RulesUpdated(RulesRead):
    recompute: SweepResult | None


class SegmentSummary(BaseModel):
    total: int
    counts: dict[str, dict[str, int]]
    rule_version: int
    last_sweep_at: datetime | None


class RFMRead(BaseModel):
    r: int | None
    f: int | None
    m: int | None
    segment: str | None


class TierChangeRead(BaseModel):
    changed_at: datetime
    dimension: str
    old_class: str | None
    new_class: str | None
    reason: str
    detail: str | None
    cause: str
    rule_version: int | None


class SegmentFacts(BaseModel):
    last_touch_at: datetime
    days_since_last_touch: int
    deals: int
    purchases_in_window: str | None
    purchase_window_days: int
    interactions_in_window: int
    interaction_window_days: int
    unresolved_complaints: int
    open_need: bool


class CustomerSegments(BaseModel):
    code: str
    value_tier: str
    lifecycle: str
    activity: str
    rfm: RFMRead
    rule_version: int
    pending: dict[str, str]
    reasons: dict[str, str]
    facts: SegmentFacts
    changes: list[TierChangeRead]
