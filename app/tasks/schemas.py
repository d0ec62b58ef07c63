"""Task and reminder API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.interactions.schemas import CustomerCode, LongText, TaskStatus


class _Write(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


Title = Annotated[str, Field(min_length=1, max_length=200)]


class TaskCreate(_Write):
    customer_code: CustomerCode
    title: Title
    note: LongText | None = None
    assignee_id: int | None = Field(default=None, description="Defaults to you")
    due_at: AwareDatetime


class TaskUpdate(_Write):
    """Assign (assignee_id), reschedule, complete (status=done) or cancel (status=cancelled).
    An assignee who may not change the customer can still change the status and the note."""

    title: Title | None = None
    note: LongText | None = None
    assignee_id: int | None = None
    due_at: AwareDatetime | None = None
    status: TaskStatus | None = None


class TaskRead(BaseModel):
    id: int
    customer_code: str
    interaction_id: int | None
    title: str
    note: str | None
    assignee_id: int
    due_at: datetime
    status: str
    completed_at: datetime | None
    overdue: bool
    version: int
    created_at: datetime
    updated_at: datetime
    created_by: str | None


class TaskPage(BaseModel):
    items: list[TaskRead]
    next_cursor: str | None


class DueCustomer(BaseModel):
    code: str
    name: str
    owner_id: int | None
    value_tier: str
    lifecycle: str
    last_follow_up_at: datetime | None
    next_follow_up_at: datetime | None
    days_since_follow_up: int = Field(
        description="Days since the last follow-up (or since the customer was created)"
    )
    cadence_days: int | None = Field(
        default=None, description="The tier's cadence, for cadence reminders"
    )


class OverdueTasks(BaseModel):
    count: int
    items: list[TaskRead]


class DueCustomers(BaseModel):
    count: int
    threshold_days: int | None = None
    items: list[DueCustomer]


class Reminders(BaseModel):
    scope: str
    overdue_tasks: OverdueTasks
    stale_customers: DueCustomers
    cadence_due: DueCustomers
    cadence_days: dict[str, int]
