"""Task routes and the caller's reminders."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response

from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import SessionDep
from app.core.responses import FastJSONResponse
from app.customers.dependencies import parse_if_match
from app.tasks import service
from app.tasks.schemas import Reminders, TaskCreate, TaskPage, TaskRead, TaskUpdate

tasks_router = APIRouter(prefix="/tasks", tags=["tasks"])
reminders_router = APIRouter(prefix="/reminders", tags=["tasks"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such task or customer, or not visible to you"},
    422: {"description": "Invalid input; `errors` names each field"},
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"description": "Not allowed"},
    412: {"description": "Stale If-Match version"},
}


def _with_etag(body: dict[str, Any], status_code: int = 200) -> FastJSONResponse:
    return FastJSONResponse(body, status_code=status_code, headers={"ETag": f'"{body["version"]}"'})


@tasks_router.post("", response_model=TaskRead, status_code=201, responses=WRITE_ERRORS)
async def create_task(
    body: TaskCreate,
    session: SessionDep,
    principal: Annotated[Principal, require("tasks:write")],
) -> Response:
    """Create a follow-up task on a customer you may change."""
    task = await service.create(session, principal, body)
    response = _with_etag(task, 201)
    response.headers["Location"] = f"/api/v1/tasks/{task['id']}"
    return response


@tasks_router.get("", response_model=TaskPage, responses=ERRORS)
async def list_tasks(
    session: SessionDep,
    principal: Annotated[Principal, require("tasks:read")],
    assignee: Annotated[str | None, Query(description="A user id or `me`")] = None,
    status: Annotated[
        list[Literal["open", "done", "cancelled"]] | None, Query(description="Repeatable")
    ] = None,
    customer: Annotated[str | None, Query(description="A customer code")] = None,
    due_from: Annotated[datetime | None, Query()] = None,
    due_to: Annotated[datetime | None, Query()] = None,
    overdue: Annotated[bool, Query(description="Open tasks past their due time")] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Response:
    """Tasks on customers you may see, by due time (earliest first), filtered."""
    page = await service.list_tasks(
        session,
        principal,
        assignee=assignee,
        status=list(status or []),
        customer_code=customer,
        due_from=due_from,
        due_to=due_to,
        overdue=overdue,
        limit=limit,
        cursor=cursor,
    )
    return FastJSONResponse(page)


@tasks_router.get("/{task_id}", response_model=TaskRead, responses=ERRORS)
async def get_task(
    task_id: int, session: SessionDep, principal: Annotated[Principal, require("tasks:read")]
) -> Response:
    """One task, with its version as ETag."""
    return _with_etag(await service.get(session, principal, task_id))


@tasks_router.patch("/{task_id}", response_model=TaskRead, responses=WRITE_ERRORS)
async def update_task(
    task_id: int,
    body: TaskUpdate,
    session: SessionDep,
    principal: Annotated[Principal, require("tasks:write")],
    if_match: Annotated[int | None, Depends(parse_if_match)],
) -> Response:
    """Assign, reschedule, complete (status=done) or cancel (status=cancelled) a task."""
    return _with_etag(await service.update(session, principal, task_id, body, if_match=if_match))


@reminders_router.get("", response_model=Reminders)
async def get_reminders(
    session: SessionDep,
    principal: Annotated[Principal, require("tasks:read")],
    scope: Annotated[
        Literal["mine", "all"],
        Query(description="`all`: everyone's, for roles that see every customer"),
    ] = "mine",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """Overdue tasks, stale customers and customers whose follow-up cadence is due."""
    return FastJSONResponse(await service.reminders(session, principal, scope=scope, limit=limit))
