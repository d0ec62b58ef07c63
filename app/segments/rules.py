"""The segmentation rules document: thresholds for SPEC §3 and §4, stored and versioned.

Version 1 (the defaults) is written by the migration; PUT /segments/rules stores the next one.
The SQL reads the newest version itself, so every process uses the same rules at once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Days = Annotated[int, Field(ge=1, le=3650)]
Count = Annotated[int, Field(ge=1, le=100_000)]


class _Rules(BaseModel):
    # A rules document replaces the previous one whole: every field is required, none unknown.
    model_config = ConfigDict(extra="forbid")


class ValueTierRules(_Rules):
    churn_risk_quiet_days: Days = Field(
        description="churn_risk when the last interaction is older than this"
    )
    churn_risk_unresolved_complaint: bool = Field(
        description="churn_risk while a complaint is unresolved"
    )
    # Optional, so that rules documents written before the churn model keep validating.
    churn_risk_p_alive_below: Annotated[float, Field(gt=0, le=1)] | None = Field(
        default=None,
        description="churn_risk when the churn model's probability that the customer is still "
        "alive (BG/NBD, refitted by the sweep) is below this; null: the rule is off",
    )
    high_value_amount: Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=2)] = Field(
        description="high_value when purchases in the window reach this many CNY"
    )
    high_value_window_days: Days
    high_value_deals: Count = Field(description="high_value from this many deals (all time)")
    potential_open_need: bool = Field(
        description="potential when the customer states a need and has no deal yet"
    )
    potential_interactions: Count = Field(
        description="potential from this many interactions in the window"
    )
    potential_window_days: Days


class LifecycleRules(_Rules):
    churned_quiet_days: Days = Field(
        description="churned when a customer who bought has had no interaction for this long"
    )


class ActivityRules(_Rules):
    active_days: Days = Field(description="active: an interaction within this many days")
    lost_days: Days = Field(description="lost: no interaction for longer than this; else dormant")

    @model_validator(mode="after")
    def _ordered(self) -> ActivityRules:
        if self.lost_days <= self.active_days:
            raise ValueError("lost_days must be greater than active_days")
        return self


CadenceTier = Literal["high_value", "potential", "normal", "churn_risk"]


class ReminderRules(_Rules):
    stale_days: Days = Field(description="a customer not followed up for this long is stale")
    cadence_days: dict[CadenceTier, Days] = Field(
        description="follow-up cadence per value tier: a customer is due after this many days"
    )


class PoolRules(_Rules):
    release_days: Days = Field(
        description="potential customers not followed up for this long go to the shared pool"
    )


class SegmentRules(_Rules):
    value_tier: ValueTierRules
    lifecycle: LifecycleRules
    activity: ActivityRules
    reminders: ReminderRules
    pool: PoolRules


DEFAULT_RULES = SegmentRules(
    value_tier=ValueTierRules(
        churn_risk_quiet_days=90,
        churn_risk_unresolved_complaint=True,
        high_value_amount=Decimal("100000.00"),
        high_value_window_days=180,
        high_value_deals=3,
        potential_open_need=True,
        potential_interactions=2,
        potential_window_days=90,
    ),
    lifecycle=LifecycleRules(churned_quiet_days=180),
    activity=ActivityRules(active_days=30, lost_days=90),
    reminders=ReminderRules(stale_days=30, cadence_days={"high_value": 7, "potential": 14}),
    pool=PoolRules(release_days=90),
)
