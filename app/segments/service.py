"""Segmentation: per-customer recompute on every write, the whole-base sweep, the rules."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.principal import Principal
from app.core.config import get_settings
from app.core.db import Writer
from app.core.errors import Conflict, NotFound
from app.customers import service as customer_service
from app.pool import service as pool_service
from app.prediction import service as prediction_service
from app.privacy import service as privacy_service
from app.segments import repository as repo
from app.segments.rules import SegmentRules

log = logging.getLogger(__name__)


def _tz() -> str:
    return get_settings().timezone


async def recompute_customer(session: Writer, customer_id: int, *, cause: str) -> None:
    """Reclassify one customer inside the caller's transaction (a read right after sees it)."""
    await repo.classify_customer(session, customer_id, cause=cause, tz=_tz())


# ---- the sweep -------------------------------------------------------------------------------


async def run_sweep(
    session: AsyncSession,
    *,
    cause: str,
    wait: bool = False,
    skip_if_newer_than: timedelta | None = None,
) -> dict[str, Any] | None:
    """Recompute the time-driven classes and RFM for the whole base, then release quiet
    customers to the pool. Returns None when another sweep holds the lock (and `wait` is
    False) or one finished within `skip_if_newer_than`. Runs in the caller's transaction; the
    advisory lock is held until it commits, so only one sweep runs across all processes."""
    if wait:
        await repo.wait_sweep_lock(session)
    elif not await repo.try_sweep_lock(session):
        return None
    if skip_if_newer_than is not None:
        last = await repo.last_sweep(session)
        if last is not None and last.finished_at > await repo.clock(session) - skip_if_newer_than:
            return None
    await repo.sweep_settings(session)
    started = await repo.clock(session)
    tz = _tz()
    retention_days = get_settings().retention_days
    # First: the churn model's predictions (not stored yet) from the purchase histories; the
    # value tier's churn-risk rule reads them.
    # The facts kept between sweeps, brought up to now (only the stale ones, normally).
    refreshed = await repo.refresh_facts(session, tz=tz)
    prediction = await prediction_service.prepare(session, cause=cause, tz=tz, from_facts=True)
    # Classes, RFM and predictions in one pass and one UPDATE; the RFM scores come from the
    # purchases the prediction step read. It also picks out who the two steps below must look
    # at (each re-checks its condition): an hour's slack covers the time until the flagging
    # takes its own cut-off.
    classes = await repo.sweep_classes(
        session,
        cause=cause,
        tz=tz,
        predictions=prediction.pop("predictions"),
        erasure_cutoff=datetime.now(UTC) - timedelta(days=retention_days, hours=-1),
    )
    prediction["customers_changed"] = classes["predictions_changed"]
    # PIPL retention: churned customers without consent past the period are flagged.
    flagged = await privacy_service.flag_due_for_erasure(
        session, retention_days, among=classes["erasure_candidates"]
    )
    # Last: it writes audit rows (one per released customer).
    released = await pool_service.release_quiet_customers(
        session, cause=cause, among=classes["release_candidates"]
    )
    finished = await repo.clock(session)
    result = {
        "cause": cause,
        "rule_version": classes["rule_version"],
        "started_at": started,
        "finished_at": finished,
        "duration_ms": round((finished - started).total_seconds() * 1000, 1),
        "customers_changed": classes["customers_changed"],
        "tier_changes": classes["tier_changes"] + classes["rfm_logged"],
        "rfm_changed": classes["rfm_changed"],
        "released": released,
        "flagged_for_erasure": flagged,
        "prediction": prediction,
        "facts": refreshed,
    }
    await repo.record_sweep(
        session,
        {
            k: result[k]
            for k in (
                "cause",
                "rule_version",
                "started_at",
                "finished_at",
                "customers_changed",
                "tier_changes",
                "rfm_changed",
                "released",
            )
        },
    )
    log.info(
        "segmentation sweep",
        extra={"event": "sweep", "duration_ms": result["duration_ms"], "count": released},
    )
    return result


async def recompute_now(session: AsyncSession, principal: Principal) -> dict[str, Any]:
    """An admin's on-demand sweep; 409 while another one runs."""
    result = await run_sweep(session, cause="manual")
    if result is None:
        raise Conflict(
            "A segmentation sweep is running; try again when it has finished.",
            "客户分层重算正在进行，请稍后再试。",
        )
    await audit.record(
        session,
        actor=principal,
        action="segments.recompute",
        entity_type="segment_rules",
        entity_id=result["rule_version"],
        changes={"released": result["released"], "tier_changes": result["tier_changes"]},
    )
    return result


# ---- rules -----------------------------------------------------------------------------------


def _rules_view(row: Any) -> dict[str, Any]:
    return {
        "version": row.version,
        "rules": row.rules,
        "created_at": row.created_at,
        "created_by": row.created_by,
    }


async def get_rules(session: AsyncSession, version: int | None = None) -> dict[str, Any]:
    if version is None:
        return _rules_view(await repo.current_rules(session))
    row = await repo.rules_version(session, version)
    if row is None:
        raise NotFound("No such rules version.", "没有该版本的分层规则。")
    return _rules_view(row)


async def current_rules(session: AsyncSession) -> SegmentRules:
    return SegmentRules.model_validate((await repo.current_rules(session)).rules)


async def put_rules(
    session: AsyncSession, principal: Principal, rules: SegmentRules
) -> dict[str, Any]:
    """Store the next version and recompute the whole base with it, in one transaction."""
    before = await repo.current_rules(session)
    document = rules.model_dump(mode="json")
    # Compared as validated, so fields added since (with their defaults) make no difference.
    if document == SegmentRules.model_validate(before.rules).model_dump(mode="json"):
        return {**_rules_view(before), "recompute": None}
    stored = await repo.insert_rules(session, document, principal.subject)
    # Wait for a running sweep rather than skip: it may be using the old rules.
    result = await run_sweep(session, cause="rule_change", wait=True)
    await audit.record(
        session,
        actor=principal,
        action="segments.rules_update",
        entity_type="segment_rules",
        entity_id=stored.version,
        changes=audit.diff(_flatten(before.rules), _flatten(document)),
    )
    return {**_rules_view(stored), "recompute": result}


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---- reading ---------------------------------------------------------------------------------


async def summary(session: AsyncSession, principal: Principal) -> dict[str, Any]:
    counts = await repo.summary_counts(session, principal)
    total = counts.pop("_")["total"]
    last = await repo.last_sweep(session)
    return {
        "total": total,
        "counts": counts,
        "rule_version": (await repo.current_rules(session)).version,
        "last_sweep_at": last.finished_at if last else None,
    }


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


async def customer_segments(
    session: AsyncSession, principal: Principal, code: str
) -> dict[str, Any]:
    row = await customer_service.get(session, principal, code)
    facts = await repo.facts(session, row["id"], tz=_tz())
    assert facts is not None  # the customer is visible, hence live
    amounts = principal.sees_contract_amount
    # The stored classes change on writes and sweeps; time may already have moved the live
    # computation on (a customer going quiet). `pending` names what the next sweep will store.
    live = {
        "value_tier": facts["tier"],
        "lifecycle": facts["lifecycle"],
        "activity": facts["activity"],
    }
    pending = {dim: cls for dim, cls in live.items() if row[dim] != cls}
    tier_reason = facts["tier_detail"]
    if not amounts and facts["tier"] == "high_value" and "CNY" in tier_reason:
        tier_reason = AMOUNT_HIDDEN
    return {
        "code": row["code"],
        "value_tier": row["value_tier"],
        "lifecycle": row["lifecycle"],
        "activity": row["activity"],
        "rfm": {
            "r": row["rfm_r"],
            "f": row["rfm_f"],
            "m": row["rfm_m"],
            "segment": row["rfm_segment"],
        },
        "rule_version": facts["rule_version"],
        "pending": pending,
        "reasons": {
            "value_tier": tier_reason,
            "lifecycle": facts["lifecycle_detail"],
            "activity": facts["activity_detail"],
        },
        "facts": {
            "last_touch_at": facts["last_touch"],
            "days_since_last_touch": facts["quiet_days"],
            "deals": facts["deals"],
            "purchases_in_window": _money(facts["hv_sum"]) if amounts else None,
            "purchase_window_days": facts["hv_days"],
            "interactions_in_window": facts["recent"],
            "interaction_window_days": facts["pot_days"],
            "unresolved_complaints": facts["unresolved"],
            "open_need": facts["open_need"],
        },
        "prediction": {
            "p_alive": facts["p_alive"],
            "expected_purchases_90d": facts["expected_purchases_90d"],
            "horizon_days": prediction_service.HORIZON_DAYS,
            "predicted_at": facts["prediction_at"],
        },
        "changes": [
            redact_change(c, principal) for c in await repo.recent_changes(session, row["id"], 20)
        ],
    }


AMOUNT_HIDDEN = "purchases in the window reach the high-value amount"


def redact_change(change: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """A tier change as the caller may read it: purchase amounts need contract:read."""
    if change.get("reason") == "purchase_amount" and not principal.sees_contract_amount:
        return {**change, "detail": AMOUNT_HIDDEN}
    return change
