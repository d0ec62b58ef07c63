"""The benchmark driver's combining of slices: one endpoint's measurement is taken in slices
(API, stack, stack, API), and each server's figures are those of its slices together."""

from __future__ import annotations

import random

import pytest

from bench.driver import GRID, LoadResult, combine, percentile_ms


def _run(latencies_s: list[float], seconds: float, errors: int = 0) -> LoadResult:
    ordered = sorted(latencies_s)
    return LoadResult(
        requests=len(ordered),
        seconds=seconds,
        rps=len(ordered) / seconds,
        p50_ms=percentile_ms(ordered, 50),
        p99_ms=percentile_ms(ordered, 99),
        errors=errors,
        driver="python",
        quantiles_ms=tuple(percentile_ms(ordered, p) for p in GRID),
    )


def test_one_slice_is_its_own_figures() -> None:
    run = _run([0.001 * i for i in range(1, 101)], 2.0)
    assert combine([run]) is run


def test_slices_combine_as_all_their_requests_together() -> None:
    rng = random.Random(7)
    fast = [rng.uniform(0.001, 0.010) for _ in range(4000)]  # a quick slice
    slow = [rng.uniform(0.020, 0.040) for _ in range(2000)]  # the machine slower in another
    whole = sorted(fast + slow)
    combined = combine([_run(fast, 4.0, errors=1), _run(slow, 4.0, errors=2)])

    assert combined.requests == 6000
    assert combined.seconds == 8.0
    assert combined.rps == pytest.approx(750.0)
    assert combined.errors == 3
    # Not the mean of the slices' percentiles (p50 (5.5 + 30) / 2 ms, p99 (9.9 + 39.8) / 2):
    # the percentiles of the 6,000 requests, within the grid's resolution.
    assert combined.p50_ms == pytest.approx(percentile_ms(whole, 50), rel=0.03)
    assert combined.p99_ms == pytest.approx(percentile_ms(whole, 99), rel=0.01)
    assert combined.p50_ms < 10 < 30 < combined.p99_ms


def test_a_slice_without_its_percentiles_is_refused() -> None:
    bare = LoadResult(100, 1.0, 100.0, 5.0, 9.0, 0, "wrk")
    with pytest.raises(ValueError, match="percentiles"):
        combine([bare, bare])
