"""Customer HTTP routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import Response as RawResponse

from app.auth.dependencies import require
from app.auth.principal import Principal
from app.core.db import ReadConnectionDep, Reader, SessionDep, WriteConnectionDep
from app.core.hotroutes import HotRead, HotWrite
from app.core.responses import FastJSONResponse
from app.customers import service
from app.customers.dependencies import filter_from_query, filter_query_docs, parse_if_match
from app.customers.schemas import (
    AssignRequest,
    CustomerCreate,
    CustomerFilter,
    CustomerPage,
    CustomerRead,
    CustomerUpdate,
    SortKey,
)

router = APIRouter(prefix="/customers", tags=["customers"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such customer, or not visible to you"},
    422: {"description": "Invalid input; `errors` names each field"},
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"description": "Not allowed"},
    412: {"description": "Stale If-Match version"},
}


def _with_etag(body: dict[str, Any], status_code: int = 200) -> FastJSONResponse:
    return FastJSONResponse(body, status_code=status_code, headers={"ETag": f'"{body["version"]}"'})


@router.post("", response_model=CustomerRead, status_code=201, responses=WRITE_ERRORS)
async def create_customer(
    body: CustomerCreate,
    session: WriteConnectionDep,
    principal: Annotated[Principal, require("customers:write")],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Create a customer; the service assigns its code. Retry safely with Idempotency-Key."""
    created = await service.create(session, principal, body, idempotency_key=idempotency_key)
    response = _with_etag(created, 201)
    response.headers["Location"] = f"/api/v1/customers/{created['code']}"
    return response


# Answered beside FastAPI when the request is well-formed (app.core.hotroutes).
HOT_WRITES = [HotWrite(create_customer)]


def _filter_parameters() -> list[dict[str, Any]]:
    """The OpenAPI parameters `filter_query_docs` declares, generated once: the list documents
    them without FastAPI parsing and validating 21 query parameters on every request (the
    filter is parsed by `filter_from_query`)."""
    from fastapi import FastAPI

    docs = FastAPI()

    @docs.get("/", dependencies=[Depends(filter_query_docs)])
    def _probe() -> None:
        return None

    params: list[dict[str, Any]] = docs.openapi()["paths"]["/"]["get"]["parameters"]
    return params


@router.get(
    "",
    response_model=CustomerPage,
    responses=ERRORS,
    openapi_extra={"parameters": _filter_parameters()},
)
async def list_customers(
    session: ReadConnectionDep,
    principal: Annotated[Principal, require("customers:read")],
    filters: Annotated[CustomerFilter, Depends(filter_from_query)],
    sort: SortKey | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
    with_count: bool = False,
) -> Response:
    """List the customers you may see, filtered, searched and sorted, a keyset page at a time."""
    page = await service.list_customers(
        session, principal, filters, sort=sort, limit=limit, cursor=cursor, with_count=with_count
    )
    return FastJSONResponse(page)


@router.get("/{code}", response_model=CustomerRead, responses=ERRORS)
async def get_customer(
    code: str,
    session: ReadConnectionDep,
    principal: Annotated[Principal, require("customers:read")],
) -> Response:
    """One customer, with its version as ETag."""
    return await read_customer(session, principal, code)


async def read_customer(conn: Reader, principal: Principal, code: str) -> Response:
    row = await service.get(conn, principal, code)
    return _with_etag(service.to_public(row, principal))


# The busiest read, also answered without FastAPI's routing (app.core.hotroutes).
HOT_READS = [HotRead(get_customer, read_customer)]


@router.patch("/{code}", response_model=CustomerRead, responses=WRITE_ERRORS)
async def update_customer(
    code: str,
    body: CustomerUpdate,
    session: SessionDep,
    principal: Annotated[Principal, require("customers:write")],
    if_match: Annotated[int | None, Depends(parse_if_match)],
) -> Response:
    """Change the fields sent (null clears); If-Match with a stale ETag is 412."""
    updated = await service.update(session, principal, code, body, if_match=if_match)
    return _with_etag(updated)


@router.delete("/{code}", status_code=204, responses=WRITE_ERRORS)
async def delete_customer(
    code: str,
    session: SessionDep,
    principal: Annotated[Principal, require("customers:delete")],
    if_match: Annotated[int | None, Depends(parse_if_match)],
) -> RawResponse:
    """Soft-delete a customer (an admin can restore it)."""
    await service.delete(session, principal, code, if_match=if_match)
    return RawResponse(status_code=204)


@router.post("/{code}/restore", response_model=CustomerRead, responses=ERRORS)
async def restore_customer(
    code: str, session: SessionDep, principal: Annotated[Principal, require("customers:restore")]
) -> Response:
    """Restore a soft-deleted customer."""
    return _with_etag(await service.restore(session, principal, code))


@router.post("/{code}/assign", response_model=CustomerRead, responses=WRITE_ERRORS)
async def assign_customer(
    code: str,
    body: AssignRequest,
    session: SessionDep,
    principal: Annotated[Principal, require("customers:assign")],
) -> Response:
    """Give the customer to another owner, or release it to the shared pool with null."""
    return _with_etag(await service.assign(session, principal, code, body.owner_id))
