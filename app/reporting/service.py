"""Reports (SPEC §11): the numbers come from set-based SQL in the repository, scoped to what the
caller may see; here they get their labels, shares and rates, and the periods their instants.

Amounts need `contract:read` (a principal without it gets the counts and null amounts). Nothing
in a report names a customer or carries a customer's contact details: owners are staff, and
complaint themes are words several customers use.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth import service as auth_service
from app.auth.principal import Principal
from app.core.config import get_settings
from app.core.errors import ValidationFailed, field_error
from app.customers import service as customer_service
from app.customers.enums import ENUMS
from app.customers.industries import DIVISIONS, SECTIONS
from app.reporting import repository as repo
from app.reporting import themes
from app.reporting.dependencies import Window
from app.reporting.schemas import ChannelCostsUpdate
from app.segments import service as segment_service

UNSET = "未填写"
POOL = "公海（无负责人）"
COMPLETENESS_TARGET = 0.9
THEME_TEXTS_MAX = 5000
THEME_MIN_CUSTOMERS = 2


def _rate(part: int, whole: int) -> float | None:
    return None if whole <= 0 else round(part / whole, 4)


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(Decimal("0.01"), ROUND_HALF_UP))


def _local(value: datetime | None, window: Window) -> datetime | None:
    return None if value is None else value.astimezone(window.zone)


def _head(window: Window) -> dict[str, Any]:
    return {
        "generated_at": datetime.now(window.zone).replace(microsecond=0),
        "timezone": window.zone.key,
    }


def _shares(
    counts: list[tuple[Any, int]], labels: dict[str, str], *, unset: str = UNSET
) -> list[dict[str, Any]]:
    total = sum(n for _, n in counts)
    rows = [
        {
            "key": None if key is None else str(key),
            "label": unset if key is None else labels.get(str(key), str(key)),
            "count": n,
            "share": _rate(n, total),
        }
        for key, n in counts
    ]
    return sorted(rows, key=lambda r: (-r["count"], r["key"] is None, r["key"] or ""))


async def _source_labels(session: AsyncSession) -> dict[str, str]:
    return {ch.code: ch.label for ch in await customer_service.source_channels(session)}


async def _staff_labels(session: AsyncSession, ids: set[int]) -> dict[str, str]:
    names = await auth_service.staff_names(session, ids)
    return {str(k): v for k, v in names.items()}


# ---- overview --------------------------------------------------------------------------------


def _by_section(counts: list[tuple[Any, int]]) -> list[tuple[Any, int]]:
    folded: dict[str | None, int] = {}
    for code, n in counts:
        section = None if code is None else (code if code in SECTIONS else DIVISIONS[code][0])
        folded[section] = folded.get(section, 0) + n
    return list(folded.items())


async def overview(session: AsyncSession, principal: Principal, window: Window) -> dict[str, Any]:
    counts = await repo.overview_counts(session, principal, window.start, window.end)
    owners = {int(k) for k, _ in counts["owner"] if k is not None}
    labels = {
        "source": await _source_labels(session),
        "cooperation_status": ENUMS["cooperation_status"],
        "value_tier": ENUMS["value_tier"],
        "lifecycle": ENUMS["lifecycle"],
        "industry": SECTIONS,
        "region": {},
        "owner": await _staff_labels(session, owners),
    }
    counts["industry"] = _by_section(counts["industry"])
    dimensions = {
        name: _shares(values, labels[name], unset=POOL if name == "owner" else UNSET)
        for name, values in counts.items()
    }
    return {
        **_head(window),
        "period": {"start": window.start, "end": window.end},
        "total": sum(n for _, n in counts["lifecycle"]),
        "dimensions": dimensions,
    }


# ---- weekly ----------------------------------------------------------------------------------


async def _new_customers(
    session: AsyncSession, principal: Principal, window: Window
) -> dict[str, Any]:
    assert window.start is not None and window.end is not None
    counts = await repo.new_customers_by_source(session, principal, window.start, window.end)
    return {
        "total": sum(n for _, n in counts),
        "by_channel": _shares(counts, await _source_labels(session)),
    }


def _task_figures(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("due", "on_time", "late", "open", "overdue", "cancelled")
    figures = {k: int(row.get(k) or 0) for k in keys}
    active = figures["due"] - figures["cancelled"]
    return {
        **figures,
        "completion_rate": _rate(figures["on_time"] + figures["late"], active),
        "on_time_rate": _rate(figures["on_time"], active),
    }


async def weekly(
    session: AsyncSession,
    principal: Principal,
    window: Window,
    *,
    response_hours: int | None,
) -> dict[str, Any]:
    assert window.start is not None and window.end is not None
    now = datetime.now(UTC)
    hours = response_hours or get_settings().report_response_hours

    replies = await repo.response_counts(
        session, principal, window.start, window.end, window=timedelta(hours=hours), now=now
    )
    channel_labels = ENUMS["channel"]
    by_channel = sorted(
        (
            {
                "key": r["channel"],
                "label": channel_labels.get(r["channel"], r["channel"]),
                "inbound": r["inbound"],
                "answered": r["answered"],
                "pending": r["pending"],
                "rate": _rate(r["answered"], r["inbound"] - r["pending"]),
            }
            for r in replies
        ),
        key=lambda r: (-r["inbound"], r["key"]),
    )
    inbound = sum(r["inbound"] for r in replies)
    answered = sum(r["answered"] for r in replies)
    pending = sum(r["pending"] for r in replies)

    task_rows = await repo.task_counts(session, principal, window.start, window.end, now)
    staff = await _staff_labels(session, {int(r["assignee_id"]) for r in task_rows})
    totals = {
        k: sum(int(r[k]) for r in task_rows)
        for k in ("due", "on_time", "late", "open", "overdue", "cancelled")
    }
    by_assignee = sorted(
        (
            {
                "key": str(r["assignee_id"]),
                "label": staff.get(str(r["assignee_id"]), str(r["assignee_id"])),
                **_task_figures(r),
            }
            for r in task_rows
        ),
        key=lambda r: (-r["due"], r["key"]),
    )

    return {
        **_head(window),
        "period": {"week": window.label, "start": window.start, "end": window.end},
        "new_customers": await _new_customers(session, principal, window),
        "response": {
            "window_hours": hours,
            "inbound": inbound,
            "answered": answered,
            "pending": pending,
            "rate": _rate(answered, inbound - pending),
            "by_channel": by_channel,
        },
        "tasks": {**_task_figures(totals), "by_assignee": by_assignee},
        "cadence": await _cadence(session, principal, window, now),
    }


async def _cadence(
    session: AsyncSession, principal: Principal, window: Window, now: datetime
) -> dict[str, Any]:
    assert window.end is not None
    rules = (await segment_service.current_rules(session)).reminders
    cadence_days = {str(tier): int(days) for tier, days in rules.cadence_days.items()}
    as_of = min(window.end, now)
    rows = await repo.cadence_counts(
        session,
        principal,
        as_of=as_of,
        cadence_days=cadence_days,
        historical=as_of < now,
    )
    tier_rows = [r for r in rows if r["g_tier"] == 0]
    owner_rows = [r for r in rows if r["g_tier"] == 1]
    staff = await _staff_labels(
        session, {int(r["owner_id"]) for r in owner_rows if r["owner_id"] is not None}
    )
    tiers = ENUMS["value_tier"]
    by_tier = [
        {
            "key": r["tier"],
            "label": tiers.get(r["tier"], r["tier"]),
            "cadence_days": cadence_days[r["tier"]],
            "customers": r["customers"],
            "compliant": r["compliant"],
            "rate": _rate(r["compliant"], r["customers"]),
        }
        for r in sorted(tier_rows, key=lambda r: list(cadence_days).index(r["tier"]))
    ]
    by_owner = sorted(
        (
            {
                "key": None if r["owner_id"] is None else str(r["owner_id"]),
                "label": POOL
                if r["owner_id"] is None
                else staff.get(str(r["owner_id"]), str(r["owner_id"])),
                "customers": r["customers"],
                "compliant": r["compliant"],
                "rate": _rate(r["compliant"], r["customers"]),
            }
            for r in owner_rows
        ),
        key=lambda r: (-r["customers"], r["key"] is None, r["key"] or ""),
    )
    customers = sum(r["customers"] for r in tier_rows)
    compliant = sum(r["compliant"] for r in tier_rows)
    return {
        "as_of": as_of.astimezone(window.zone),
        "customers": customers,
        "compliant": compliant,
        "rate": _rate(compliant, customers),
        "by_tier": by_tier,
        "by_owner": by_owner,
    }


# ---- monthly ---------------------------------------------------------------------------------


async def _conversions(
    session: AsyncSession, principal: Principal, dimension: str, window: Window
) -> list[dict[str, Any]]:
    assert window.start is not None and window.end is not None
    labels = ENUMS[dimension]
    rows = await repo.conversions(session, principal, dimension, window.start, window.end)

    def name(cls: str | None) -> str:
        return UNSET if cls is None else labels.get(cls, cls)

    return [
        {
            "key": f"{r['old_class'] or ''}>{r['new_class'] or ''}",
            "label": f"{name(r['old_class'])}→{name(r['new_class'])}",
            "from_class": r["old_class"],
            "to_class": r["new_class"],
            "transitions": r["transitions"],
            "customers": r["customers"],
            "base": r["base"],
            "rate": _rate(r["customers"], r["base"]),
        }
        for r in rows
    ]


def _roi(amount: Decimal | None, cost: Decimal | None) -> float | None:
    if amount is None or cost is None or cost <= 0:
        return None
    return round(float((amount - cost) / cost), 4)


async def _channel_roi(
    session: AsyncSession, principal: Principal, window: Window, month: date
) -> dict[str, Any]:
    assert window.start is not None and window.end is not None
    amounts = principal.sees_contract_amount
    costs = {
        row["channel"]: Decimal(row["amount"]) for row in await repo.channel_costs(session, month)
    }
    acquired = dict(
        await repo.new_customers_by_source(session, principal, window.start, window.end)
    )
    deals = {
        source: (n, total)
        for source, n, total in await repo.deals_by_source(
            session, principal, window.start, window.end
        )
    }
    labels = await _source_labels(session)
    keys: set[str | None] = set(costs) | set(acquired) | set(deals)
    items = []
    for key in keys:
        cost = costs.get(key) if key is not None else None
        new = acquired.get(key, 0)
        count, total = deals.get(key, (0, Decimal(0)))
        items.append(
            {
                "key": key,
                "label": UNSET if key is None else labels.get(key, key),
                "cost": _money(cost),
                "new_customers": new,
                "cost_per_customer": _money(cost / new) if cost is not None and new else None,
                "deals": count,
                "deal_amount": _money(total) if amounts else None,
                "roi": _roi(total, cost) if amounts else None,
            }
        )
    items.sort(key=lambda r: (r["key"] is None, r["key"] or ""))
    total_cost = sum(costs.values(), Decimal(0))
    total_amount = sum((t for _, t in deals.values()), Decimal(0))
    return {
        "items": items,
        "cost": _money(total_cost),
        "new_customers": sum(acquired.values()),
        "deals": sum(n for n, _ in deals.values()),
        "deal_amount": _money(total_amount) if amounts else None,
        "roi": _roi(total_amount, total_cost) if amounts else None,
    }


async def _themes(
    session: AsyncSession, principal: Principal, window: Window, top: int
) -> dict[str, Any]:
    assert window.start is not None and window.end is not None
    out: dict[str, Any] = {"min_customers": THEME_MIN_CUSTOMERS}
    for kind in ("complaint", "feedback"):
        texts = await repo.theme_texts(
            session, principal, kind, window.start, window.end, THEME_TEXTS_MAX
        )
        # Word segmentation is CPU work: keep it off the event loop.
        count, ranked = await asyncio.to_thread(
            themes.top_themes, texts, top=top, min_customers=THEME_MIN_CUSTOMERS
        )
        out[kind] = {
            "texts": count,
            "items": [
                {
                    "key": t.word,
                    "label": t.word,
                    "mentions": t.mentions,
                    "customers": t.customers,
                    "share": _rate(t.mentions, count),
                }
                for t in ranked
            ],
        }
    return out


FIELD_LABELS = {
    "name": "客户名称",
    "contact": "联系方式（电话或邮箱）",
    "industry": "所属行业",
    "source": "客户来源",
    "region": "地区（省或市）",
    "owner": "负责人",
}


async def completeness(session: AsyncSession, principal: Principal) -> dict[str, Any]:
    """Data completeness over the customers the caller may see: the share of key fields
    filled (name, phone or email, industry, source, province or city, owner).

    An adapter: when the data-quality service (SPEC §9) lands, this delegates to it."""
    counts = await repo.completeness_counts(session, principal)
    customers = counts["customers"]
    filled = sum(counts[key] for key in FIELD_LABELS)
    overall = _rate(filled, customers * len(FIELD_LABELS))
    return {
        "customers": customers,
        "overall": overall,
        "complete_customers": counts["complete"],
        "target": COMPLETENESS_TARGET,
        "meets_target": overall is not None and overall >= COMPLETENESS_TARGET,
        "fields": [
            {
                "key": key,
                "label": label,
                "filled": counts[key],
                "rate": _rate(counts[key], customers),
            }
            for key, label in FIELD_LABELS.items()
        ],
    }


async def monthly(
    session: AsyncSession, principal: Principal, window: Window, *, top: int
) -> dict[str, Any]:
    assert window.start is not None and window.label is not None
    month = window.start.date()
    return {
        **_head(window),
        "period": {"month": window.label, "start": window.start, "end": window.end},
        "tier_conversion": await _conversions(session, principal, "value_tier", window),
        "lifecycle_conversion": await _conversions(session, principal, "lifecycle", window),
        "channel_roi": await _channel_roi(session, principal, window, month),
        "themes": await _themes(session, principal, window, top),
        "completeness": await completeness(session, principal),
    }


# ---- channel costs ---------------------------------------------------------------------------


def _month(text: str) -> date:
    return date(int(text[:4]), int(text[5:7]), 1)


async def channel_costs(session: AsyncSession, month: str | None) -> dict[str, Any]:
    labels = await _source_labels(session)
    rows = await repo.channel_costs(session, None if month is None else _month(month))
    return {
        "items": [
            {
                "channel": r["channel"],
                "label": labels.get(r["channel"], r["channel"]),
                "month": f"{r['month']:%Y-%m}",
                "amount": _money(Decimal(r["amount"])),
                "note": r["note"],
                "updated_at": r["updated_at"],
                "updated_by": r["updated_by"],
            }
            for r in rows
        ]
    }


async def put_channel_costs(
    session: AsyncSession, principal: Principal, body: ChannelCostsUpdate
) -> dict[str, Any]:
    """Replace the month's acquisition costs (audited)."""
    month = _month(body.month)
    errors = []
    rows: dict[str, dict[str, Any]] = {}
    for n, item in enumerate(body.costs):
        code = await customer_service.resolve_source(session, item.channel)
        if code is None:
            errors.append(field_error(f"costs.{n}.channel", "unknown source channel", "enum"))
        elif code in rows:
            errors.append(field_error(f"costs.{n}.channel", "listed twice", "duplicate"))
        else:
            rows[code] = {"channel": code, "amount": item.amount, "note": item.note}
    if errors:
        raise ValidationFailed(errors=errors)
    before = {
        r["channel"]: _money(Decimal(r["amount"])) for r in await repo.channel_costs(session, month)
    }
    await repo.replace_channel_costs(session, month, list(rows.values()), principal.subject)
    after = {code: _money(row["amount"]) for code, row in rows.items()}
    if before != after:
        await audit.record(
            session,
            actor=principal,
            action="reports.channel_costs_update",
            entity_type="channel_costs",
            entity_id=body.month,
            changes=audit.diff(before, after),
        )
    return await channel_costs(session, body.month)
