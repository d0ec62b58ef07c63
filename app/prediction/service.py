"""Churn prediction in the sweep: refit BG/NBD on the whole base's purchase histories, then
store every customer's probability of being alive and expected purchases in the next 90 days.

The fit runs in a worker thread on the distinct histories (not on customers), so a large base
costs seconds and the event loop stays free. Refits are throttled (`prediction_refit_hours`;
an admin's manual sweep always refits): between them the sweep still recomputes every
customer's prediction from the model in force, since T grows with every day.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import get_settings
from app.models.prediction import PredictionFit
from app.prediction import bgnbd
from app.prediction import repository as repo

log = logging.getLogger(__name__)

HORIZON_DAYS = 90
STORED_DIGITS = 2
# Below this the likelihood is too flat for stable estimates: keep the model in force.
MIN_CUSTOMERS = 30
MIN_REPEAT_CUSTOMERS = 5


def params_of(fit: PredictionFit) -> bgnbd.Params:
    return bgnbd.Params(r=fit.r, alpha=fit.alpha, a=fit.a, b=fit.b)


def fit_view(fit: PredictionFit | None) -> dict[str, Any] | None:
    if fit is None:
        return None
    return {
        "fitted_at": fit.fitted_at,
        "observed_through": fit.observed_through,
        "time_unit": fit.time_unit,
        "r": fit.r,
        "alpha": fit.alpha,
        "a": fit.a,
        "b": fit.b,
        "log_likelihood": fit.log_likelihood,
        "customers": fit.customers,
        "converged": fit.converged,
        "duration_ms": fit.duration_ms,
    }


def _fit_groups(groups: dict[str, list[int]]) -> tuple[bgnbd.Fit, float]:
    started = time.perf_counter()
    data = bgnbd.Collapsed(
        x=np.asarray(groups["x"], np.float64),
        t_x=np.asarray(groups["t_x"], np.float64),
        T=np.asarray(groups["t"], np.float64),
        weight=np.asarray(groups["n"], np.float64),
    )
    result = bgnbd.fit(data)
    return result, (time.perf_counter() - started) * 1000


def _predict(
    params: bgnbd.Params, groups: dict[str, list[int]]
) -> tuple[list[float | None], list[float | None]]:
    x, t_x, t = (np.asarray(groups[k], np.float64) for k in ("x", "t_x", "t"))
    with np.errstate(all="ignore"):
        alive = bgnbd.p_alive(params, x, t_x, t)
        expected = bgnbd.expected_purchases(params, HORIZON_DAYS, x, t_x, t)

    # Two decimals are all any decision needs, and they keep the daily rewrite small: T grows
    # by a day for every buyer, which moves six-decimal values for all of them but two-decimal
    # ones for about a fifth (measured on simulated CDNOW-like bases).
    def clean(values: Any) -> list[float | None]:
        return [
            round(float(v), STORED_DIGITS) if math.isfinite(v) and v >= 0 else None for v in values
        ]

    return clean(alive), clean(expected)


def _enough(groups: dict[str, list[int]]) -> bool:
    customers = sum(groups["n"])
    repeaters = sum(n for x, n in zip(groups["x"], groups["n"], strict=True) if x > 0)
    return customers >= MIN_CUSTOMERS and repeaters >= MIN_REPEAT_CUSTOMERS


async def prepare(
    session: AsyncSession, *, cause: str, tz: str, from_facts: bool = False
) -> dict[str, Any]:
    """Summarise the purchase histories (and the sweep's purchase totals, in temp tables),
    refit when due, and compute the prediction of every distinct history, without storing
    them: the sweep stores them in its one UPDATE (app.segments.repository.SWEEP_SQL). Returns
    the summary (`customers_changed` still to fill) and, under "predictions", the lists x,
    t_x, t, p_alive and expected, one entry per distinct history. `from_facts`: the histories
    come from the sweep's stored facts (refreshed just before, in this transaction) instead of
    a scan of every purchase."""
    started = time.perf_counter()
    today = await repo.local_today(session, tz)
    if from_facts:
        await repo.build_histories_from_facts(session, through=today)
    else:
        await repo.build_histories(session, through=today, tz=tz)
    groups = await repo.history_groups(session)
    in_force = await repo.latest_fit(session)
    refit_after = timedelta(hours=get_settings().prediction_refit_hours)
    due = (
        cause == "manual"
        or in_force is None
        or in_force.fitted_at <= datetime.now(UTC) - refit_after
    )
    refitted = False
    if due and _enough(groups):
        result, duration_ms = await asyncio.to_thread(_fit_groups, groups)
        stored = await repo.record_fit(
            session,
            {
                "observed_through": today,
                "time_unit": "day",
                "r": result.params.r,
                "alpha": result.params.alpha,
                "a": result.params.a,
                "b": result.params.b,
                "log_likelihood": result.log_likelihood,
                "customers": result.customers,
                "distinct_histories": result.distinct,
                "converged": result.converged,
                "iterations": result.iterations,
                "duration_ms": round(duration_ms, 1),
                "cause": cause,
            },
        )
        refitted = True
        if result.converged:
            in_force = stored
        else:
            log.warning("BG/NBD fit did not converge: %s", result.message)
    if in_force is not None and groups["x"]:
        alive, expected = await asyncio.to_thread(_predict, params_of(in_force), groups)
    else:
        alive = expected = [None] * len(groups["x"])
    return {
        "refitted": refitted,
        "model": fit_view(in_force),
        "customers_changed": 0,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        "predictions": {**groups, "p_alive": alive, "expected": expected},
    }


async def refresh(session: AsyncSession, *, cause: str, tz: str) -> dict[str, Any]:
    """Refit when due, then store every live customer's prediction (in the caller's
    transaction) on its own; the sweep stores them with the classes instead."""
    started = time.perf_counter()
    out = await prepare(session, cause=cause, tz=tz)
    p = out.pop("predictions")
    out["customers_changed"] = await repo.apply_predictions(session, p, p["p_alive"], p["expected"])
    out["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return out


async def model_in_force(session: AsyncSession) -> PredictionFit | None:
    return await repo.latest_fit(session)
