"""Request parsing shared by customer routes: If-Match and the filter query."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Header, Query, Request
from pydantic import ValidationError

from app.core.errors import PreconditionFailed, ValidationFailed, validation_errors
from app.customers.schemas import CustomerFilter

FILTER_LIST_KEYS = (
    "owner",
    "tier",
    "lifecycle",
    "status",
    "source",
    "industry",
    "region",
    "kind",
    "flag",
    "tag",
)
FILTER_SCALAR_KEYS = (
    "q",
    "tag_mode",
    "stale_days",
    "created_from",
    "created_to",
    "id_number",
    "bank_account",
    "p_alive_min",
    "p_alive_max",
    "expected_purchases_min",
    "expected_purchases_max",
)


async def parse_if_match(
    if_match: Annotated[str | None, Header(description='The ETag you read, e.g. "3"')] = None,
) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    raw = if_match.strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise PreconditionFailed("If-Match must be an ETag this API gave you.")
    return int(raw)


async def filter_from_query(request: Request) -> CustomerFilter:
    """Build the filter from the query string: repeated or comma-separated list values,
    custom.<key>[.gte|.lte] for custom fields."""
    params = request.query_params
    data: dict[str, object] = {}
    for key in FILTER_LIST_KEYS:
        values = [v for raw in params.getlist(key) for v in raw.split(",") if v.strip()]
        if values:
            data[key] = [v.strip() for v in values]
    for key in FILTER_SCALAR_KEYS:
        if key in params:
            data[key] = params[key]
    custom = {k.removeprefix("custom."): v for k, v in params.items() if k.startswith("custom.")}
    if custom:
        data["custom"] = custom
    try:
        return CustomerFilter.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(errors=validation_errors(list(exc.errors()))) from exc


def filter_query_docs(
    q: Annotated[
        str | None,
        Query(
            description="Name, contact, phone, email or code; pinyin "
            "initials (zjl → 张经理); small typos are found when nothing matches exactly"
        ),
    ] = None,
    owner: Annotated[list[str] | None, Query(description="User id, `me` or `none`")] = None,
    tier: Annotated[list[str] | None, Query()] = None,
    lifecycle: Annotated[list[str] | None, Query()] = None,
    status: Annotated[list[str] | None, Query(description="Cooperation status")] = None,
    source: Annotated[list[str] | None, Query()] = None,
    industry: Annotated[list[str] | None, Query()] = None,
    region: Annotated[list[str] | None, Query()] = None,
    kind: Annotated[list[str] | None, Query()] = None,
    flag: Annotated[list[str] | None, Query()] = None,
    tag: Annotated[list[str] | None, Query(description="Tag id or name")] = None,
    tag_mode: Annotated[
        Literal["any", "all"], Query(description="Customers with any (default) or all tags")
    ] = "any",
    stale_days: Annotated[int | None, Query(ge=1, le=3650)] = None,
    created_from: Annotated[str | None, Query()] = None,
    created_to: Annotated[str | None, Query()] = None,
    id_number: Annotated[str | None, Query(description="Exact, via blind index")] = None,
    bank_account: Annotated[str | None, Query(description="Exact, via blind index")] = None,
    p_alive_min: Annotated[
        float | None, Query(ge=0, le=1, description="Churn model: probability alive ≥ this")
    ] = None,
    p_alive_max: Annotated[
        float | None, Query(ge=0, le=1, description="Churn model: probability alive ≤ this")
    ] = None,
    expected_purchases_min: Annotated[
        float | None, Query(ge=0, description="Churn model: expected purchases in 90 days ≥")
    ] = None,
    expected_purchases_max: Annotated[
        float | None, Query(ge=0, description="Churn model: expected purchases in 90 days ≤")
    ] = None,
) -> None:
    """Declares the filter parameters for the OpenAPI document; parsing is filter_from_query."""
    return None
