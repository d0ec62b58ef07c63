"""The service's own purchase-history SQL on the CDNOW sample: loaded as customers and purchase
interactions, summarised up to the calibration end (30 September 1997), it gives the wheel's
per-customer frequency, recency and T, and the fit on it the published estimates."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import build_sessionmaker
from app.prediction import bgnbd
from app.prediction import repository as prediction_repo
from tests.prediction.conftest import Cdnow
from tests.prediction.test_bgnbd import assert_published

TZ = "Asia/Shanghai"
CALIBRATION_END = date(1997, 9, 30)


async def load_cdnow(engine: AsyncEngine, cdnow: Cdnow) -> None:
    ids = sorted(cdnow.summary)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO customers (code, name, created_at) "
                "SELECT 'CDNOW' || lpad(id::text, 5, '0'), 'CDNOW ' || id, "
                "TIMESTAMPTZ '1997-01-01 00:00+08' FROM unnest(CAST(:ids AS int[])) AS id"
            ),
            {"ids": ids},
        )
        # Purchases at noon, Shanghai time, on the sample's days (several on a day happen).
        await conn.execute(
            text(
                "INSERT INTO interactions (customer_id, occurred_at, channel, kind, direction, "
                "amount) SELECT c.id, (t.day + TIME '12:00') AT TIME ZONE 'Asia/Shanghai', "
                "'store', 'purchase', 'inbound', 1 "
                "FROM unnest(CAST(:cids AS int[]), CAST(:days AS date[])) AS t (cid, day) "
                "JOIN customers c ON c.code = 'CDNOW' || lpad(t.cid::text, 5, '0')"
            ),
            {
                "cids": [c for c, _ in cdnow.transactions],
                "days": [d for _, d in cdnow.transactions],
            },
        )


async def test_histories_and_fit_reproduce_cdnow(engine: AsyncEngine, cdnow: Cdnow):
    assert len(cdnow.summary) == 2357
    await load_cdnow(engine, cdnow)
    async with build_sessionmaker(engine)() as session, session.begin():
        await prediction_repo.build_histories(session, through=CALIBRATION_END, tz=TZ)
        histories = await prediction_repo.customer_histories(session)
        groups = await prediction_repo.history_groups(session)

    assert len(histories) == 2357
    mismatched = []
    for h in histories:
        frequency, recency, T = cdnow.summary[int(h["code"].removeprefix("CDNOW"))]
        # The summary gives weeks to two decimals.
        if (
            h["x"] != frequency
            or abs(h["t_x"] / 7 - recency) > 0.0051
            or abs(h["t"] / 7 - T) > 0.0051
        ):
            mismatched.append((h, (frequency, recency, T)))
    assert mismatched == []

    data = bgnbd.Collapsed(
        x=np.asarray(groups["x"], float),
        t_x=np.asarray(groups["t_x"], float) / 7,
        T=np.asarray(groups["t"], float) / 7,
        weight=np.asarray(groups["n"], float),
    )
    assert data.weight.sum() == 2357
    fit = bgnbd.fit(data)
    assert_published(fit)


async def test_purchases_after_the_observed_day_are_left_out(engine: AsyncEngine, cdnow: Cdnow):
    await load_cdnow(engine, cdnow)
    # Customer 1 bought on 2 Aug 1997 and again on 12 Dec 1997, after the calibration end.
    async with build_sessionmaker(engine)() as session, session.begin():
        await prediction_repo.build_histories(session, through=date(1997, 12, 11), tz=TZ)
        before = {h["code"]: h for h in await prediction_repo.customer_histories(session)}
        await prediction_repo.build_histories(session, through=date(1997, 12, 12), tz=TZ)
        on = {h["code"]: h for h in await prediction_repo.customer_histories(session)}
    assert (before["CDNOW00001"]["x"], on["CDNOW00001"]["x"]) == (2, 3)
    assert on["CDNOW00001"]["t_x"] == (date(1997, 12, 12) - date(1997, 1, 1)).days


@pytest.mark.parametrize("tz", ["UTC", "America/Los_Angeles"])
async def test_days_are_counted_in_the_given_time_zone(engine: AsyncEngine, cdnow: Cdnow, tz: str):
    await load_cdnow(engine, cdnow)
    async with build_sessionmaker(engine)() as session, session.begin():
        await prediction_repo.build_histories(session, through=CALIBRATION_END, tz=tz)
        histories = {h["code"]: h for h in await prediction_repo.customer_histories(session)}
    # Noon in Shanghai is the same day in UTC, the day before in Los Angeles: the histories
    # keep their shape, and only T moves by the day lost at the end.
    first = histories["CDNOW00001"]
    assert (first["x"], first["t_x"]) == (2, 213)
    assert first["t"] == (272 if tz == "UTC" else 273)
