"""Report shapes. Counts are integers, rates and shares fractions in [0, 1] (null when there is
nothing to divide by), money decimal strings ("120000.00"), instants ISO 8601 with the
report's time zone offset.

Every list item carries `key` (a stable code; null for "not filled in") and `label` (Chinese),
which is also how the CSV form names its rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.customers.schemas import Money

Rate = Annotated[float, Field(ge=0, le=1)] | None

# Periods lie in the years 1970-2999: beyond them date arithmetic would overflow.
_YEAR = r"(19[7-9][0-9]|2[0-9]{3})"
MONTH_PATTERN = rf"^{_YEAR}-(0[1-9]|1[0-2])$"
WEEK_PATTERN = rf"^{_YEAR}-W(0[1-9]|[1-4][0-9]|5[0-3])$"


class Period(BaseModel):
    start: datetime | None = Field(description="Inclusive")
    end: datetime | None = Field(description="Exclusive")


class Share(BaseModel):
    key: str | None
    label: str
    count: int
    share: Rate


# ---- overview --------------------------------------------------------------------------------


class OverviewDimensions(BaseModel):
    source: list[Share]
    cooperation_status: list[Share]
    value_tier: list[Share]
    lifecycle: list[Share]
    industry: list[Share] = Field(description="By GB/T 4754-2017 section")
    region: list[Share] = Field(description="By province (the city when no province is set)")
    owner: list[Share] = Field(description="By owner; key null is the shared pool")


class OverviewReport(BaseModel):
    """Customers you may see, counted and shared out by every classification."""

    generated_at: datetime
    timezone: str
    period: Period = Field(
        description="Customers acquired (first contact, else creation) in this range; "
        "open ends when not given"
    )
    total: int
    dimensions: OverviewDimensions


# ---- weekly ----------------------------------------------------------------------------------


class NewCustomers(BaseModel):
    total: int
    by_channel: list[Share]


class ResponseByChannel(BaseModel):
    key: str
    label: str
    inbound: int
    answered: int
    pending: int
    rate: Rate


class ResponseRate(BaseModel):
    window_hours: int
    inbound: int = Field(description="Inbound interactions in the week")
    answered: int = Field(description="Followed by an outbound one within the window")
    pending: int = Field(description="Unanswered, but the window has not closed yet")
    rate: Rate = Field(description="answered / (inbound - pending)")
    by_channel: list[ResponseByChannel]


class TaskCounts(BaseModel):
    due: int = Field(description="Tasks due in the week")
    on_time: int = Field(description="Done by their due time")
    late: int = Field(description="Done after their due time")
    open: int
    overdue: int = Field(description="Open and past their due time (part of `open`)")
    cancelled: int
    completion_rate: Rate = Field(description="(on_time + late) / (due - cancelled)")
    on_time_rate: Rate = Field(description="on_time / (due - cancelled)")


class TaskCountsByAssignee(TaskCounts):
    key: str
    label: str


class TaskCompletion(TaskCounts):
    by_assignee: list[TaskCountsByAssignee]


class CadenceRow(BaseModel):
    key: str | None
    label: str
    customers: int
    compliant: int
    rate: Rate


class CadenceTierRow(CadenceRow):
    cadence_days: int


class CadenceCompliance(BaseModel):
    as_of: datetime = Field(
        description="Measured at the end of the week (now, for the week in progress)"
    )
    customers: int
    compliant: int = Field(description="Followed up within their tier's cadence")
    rate: Rate
    by_tier: list[CadenceTierRow]
    by_owner: list[CadenceRow]


class WeekPeriod(Period):
    week: str = Field(examples=["2026-W47"])


class WeeklyReport(BaseModel):
    """New customers, response rate, task completion and follow-up cadence for one ISO week."""

    generated_at: datetime
    timezone: str
    period: WeekPeriod
    new_customers: NewCustomers
    response: ResponseRate
    tasks: TaskCompletion
    cadence: CadenceCompliance


# ---- monthly ---------------------------------------------------------------------------------


class Conversion(BaseModel):
    key: str = Field(description="`from>to`")
    label: str
    from_class: str | None
    to_class: str | None
    transitions: int = Field(description="Changes from `from_class` to `to_class` in the month")
    customers: int = Field(description="Distinct customers who made that change")
    base: int = Field(
        description="Customers in `from_class` at some time in the month (at its start or "
        "entering it during the month)"
    )
    rate: Rate = Field(description="customers / base")


class ChannelRoi(BaseModel):
    key: str | None
    label: str
    cost: str | None = Field(description="Acquisition cost entered for the month (CNY)")
    new_customers: int
    cost_per_customer: str | None
    deals: int = Field(description="Purchases in the month by customers from this channel")
    deal_amount: str | None = Field(description="Their sum (CNY); null without contract:read")
    roi: float | None = Field(description="(deal_amount - cost) / cost")


class ChannelRoiReport(BaseModel):
    items: list[ChannelRoi]
    cost: str
    new_customers: int
    deals: int
    deal_amount: str | None
    roi: float | None


class Theme(BaseModel):
    key: str = Field(description="The word")
    label: str
    mentions: int = Field(description="Texts that use it")
    customers: int = Field(description="Distinct customers whose texts use it")
    share: Rate = Field(description="mentions / texts")


class Themes(BaseModel):
    texts: int
    items: list[Theme]


class ThemeReport(BaseModel):
    min_customers: int = Field(
        description="A word is listed only when this many customers use it (no one customer's "
        "name or details surface)"
    )
    complaint: Themes
    feedback: Themes


class FieldCompleteness(BaseModel):
    key: str
    label: str
    filled: int
    rate: Rate


class Completeness(BaseModel):
    customers: int
    overall: Rate = Field(description="Filled key fields / (customers × key fields)")
    complete_customers: int = Field(description="Customers with every key field filled")
    target: float
    meets_target: bool
    fields: list[FieldCompleteness]


class MonthPeriod(Period):
    month: str = Field(examples=["2026-11"])


class MonthlyReport(BaseModel):
    """Tier conversion, channel ROI, complaint and feedback themes, data completeness."""

    generated_at: datetime
    timezone: str
    period: MonthPeriod
    tier_conversion: list[Conversion]
    lifecycle_conversion: list[Conversion]
    channel_roi: ChannelRoiReport
    themes: ThemeReport
    completeness: Completeness


# ---- channel costs (an admin input) ----------------------------------------------------------

MonthText = Annotated[str, Field(pattern=MONTH_PATTERN, examples=["2026-11"])]


class ChannelCostIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    channel: Annotated[str, Field(min_length=1, max_length=30)] = Field(
        description="A source channel code or label"
    )
    amount: Money
    note: Annotated[str, Field(max_length=500)] | None = None


class ChannelCostsUpdate(BaseModel):
    """The month's costs, replacing what was entered for it before."""

    model_config = ConfigDict(extra="forbid")

    month: MonthText
    costs: Annotated[list[ChannelCostIn], Field(max_length=200)]


class ChannelCostRead(BaseModel):
    channel: str
    label: str
    month: str
    amount: str
    note: str | None
    updated_at: datetime
    updated_by: str | None


class ChannelCostList(BaseModel):
    items: list[ChannelCostRead]
