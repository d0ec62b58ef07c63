"""Interaction and timeline API shapes. Enum inputs accept codes or Chinese labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from app.customers import enums

# A clock a few minutes fast on the client is fine; a date in the future is a typo.
FUTURE_SKEW = timedelta(minutes=5)


def _convert(name: str) -> BeforeValidator:
    """Accept a code, Chinese label or alias of enum `name`; store the code."""

    def convert(value: Any) -> Any:
        if isinstance(value, str):
            code = enums.resolve(name, value)
            if code is None:
                raise ValueError(f"must be one of: {', '.join(enums.codes(name))}")
            return code
        return value

    return BeforeValidator(convert)


def _schema(name: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "enum": enums.codes(name)})


def _to_minute(value: datetime) -> datetime:
    if value > datetime.now(UTC) + FUTURE_SKEW:
        raise ValueError("cannot be in the future")
    return value.replace(second=0, microsecond=0)


Channel = Annotated[str, _convert("channel"), _schema("channel")]
InteractionKind = Annotated[str, _convert("interaction_kind"), _schema("interaction_kind")]
Direction = Annotated[str, _convert("direction"), _schema("direction")]
Sentiment = Annotated[str, _convert("sentiment"), _schema("sentiment")]
TaskStatus = Annotated[str, _convert("task_status"), _schema("task_status")]
OccurredAt = Annotated[AwareDatetime, AfterValidator(_to_minute)]
Money = Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=2)]
Products = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=50)
]
LongText = Annotated[str, Field(max_length=5000)]
CustomerCode = Annotated[str, Field(min_length=1, max_length=20)]


class _Write(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NextAction(_Write):
    """The follow-up this interaction calls for; it becomes a task."""

    title: Annotated[str, Field(min_length=1, max_length=200)]
    due_at: AwareDatetime
    assignee_id: int | None = Field(default=None, description="Defaults to you")
    note: LongText | None = None


class InteractionCreate(_Write):
    customer_code: CustomerCode
    occurred_at: OccurredAt | None = Field(
        default=None, description="Minute precision, with a timezone; defaults to now"
    )
    channel: Channel
    kind: InteractionKind
    direction: Direction
    summary: LongText | None = None
    sentiment: Sentiment | None = None
    commitment: LongText | None = Field(default=None, description="What the customer committed to")
    staff_id: int | None = Field(default=None, description="The staff member; defaults to you")
    amount: Money | None = Field(default=None, description="CNY; purchases only (required there)")
    products: Products = Field(default=[], description="Purchases only")
    resolved: bool | None = Field(default=None, description="Complaints only; defaults to false")
    next_action: NextAction | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> InteractionCreate:
        check_kind_fields(self.kind, self.amount, self.products, self.resolved)
        if self.kind == "complaint" and self.resolved is None:
            self.resolved = False
        return self


class InteractionUpdate(_Write):
    """Only the fields sent change; the result must still fit its kind."""

    occurred_at: OccurredAt | None = None
    channel: Channel | None = None
    kind: InteractionKind | None = None
    direction: Direction | None = None
    summary: LongText | None = None
    sentiment: Sentiment | None = None
    commitment: LongText | None = None
    staff_id: int | None = None
    amount: Money | None = None
    products: Products | None = None
    resolved: bool | None = None


def check_kind_fields(
    kind: str, amount: Decimal | None, products: list[str], resolved: bool | None
) -> None:
    if kind == "purchase" and amount is None:
        raise ValueError("a purchase needs an amount")
    if kind != "purchase" and (amount is not None or products):
        raise ValueError("amount and products apply to purchases only")
    if kind != "complaint" and resolved is not None:
        raise ValueError("resolved applies to complaints only")


class NextActionRead(BaseModel):
    task_id: int
    title: str
    assignee_id: int
    due_at: datetime
    status: str


class InteractionRead(BaseModel):
    """`amount` is a decimal string, null for callers without contract:read."""

    id: int
    customer_code: str
    occurred_at: datetime
    channel: str
    kind: str
    direction: str
    summary: str | None
    sentiment: str | None
    commitment: str | None
    staff_id: int | None
    amount: str | None
    products: list[str]
    resolved: bool | None
    next_action: NextActionRead | None
    version: int
    created_at: datetime
    updated_at: datetime
    created_by: str | None


class InteractionPage(BaseModel):
    items: list[InteractionRead]
    next_cursor: str | None


TimelineType = Literal["interaction", "task", "tier_change", "edit"]


class TimelineEntry(BaseModel):
    """One event: `data` holds the interaction, task, class change or audited edit."""

    at: datetime
    type: TimelineType
    id: int
    data: dict[str, Any]


class TimelinePage(BaseModel):
    items: list[TimelineEntry]
    next_cursor: str | None
