"""Segmentation API shapes."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from app.segments.rules import SegmentRules


class PredictionModel(BaseModel):
    """A BG/NBD fit: Gamma(r, alpha) purchase rates, Beta(a, b) drop-out probabilities."""

    fitted_at: datetime
    observed_through: date
    time_unit: str = Field(description="The unit of alpha and of the histories: `day`")
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int
    converged: bool
    duration_ms: float = Field(description="Time the fit itself took")


class PredictionSweep(BaseModel):
    refitted: bool = Field(description="Whether this sweep refitted the model")
    model: PredictionModel | None = Field(description="The model in force (null: none yet)")
    customers_changed: int
    duration_ms: float = Field(
        description="Purchase histories, fit and predicting, all told (the sweep's own update "
        "stores the predictions)"
    )


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
    prediction: PredictionSweep
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


class CustomerPrediction(BaseModel):
    """The churn model's view of the customer, as the last sweep stored it (null before a
    first purchase, or while no model has been fitted)."""

    p_alive: float | None = Field(description="Probability that the customer is still active")
    expected_purchases_90d: float | None = Field(
        description="Expected purchases in the next `horizon_days` days"
    )
    horizon_days: int
    predicted_at: datetime | None


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
    prediction: CustomerPrediction
    changes: list[TierChangeRead]
