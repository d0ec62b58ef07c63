"""The BG/NBD model (Fader, Hardie and Lee, "Counting your customers the easy way", 2005):
maximum-likelihood fit and per-customer predictions, pure numpy/scipy, no database.

A customer is summarised by x (repeat purchases: purchase periods after the first), t_x (time
of the last purchase since the first) and T (time since the first purchase). The likelihood
depends on nothing else, so identical (x, t_x, T) triples are collapsed into one row with a
weight before fitting: a base of a million customers measured in whole days has far fewer
distinct triples, and every likelihood evaluation is one vectorised pass over them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

FloatArray = npt.NDArray[np.float64]

# Parameters live on a log scale during the search; this keeps them inside what float64 holds.
_LOG_BOUND = 15.0
# Below this (mean log-likelihood per customer, per log-parameter) the optimum is reached.
_FLAT_GRADIENT = 1e-4


@dataclass(frozen=True, slots=True)
class Params:
    """Gamma(r, alpha) heterogeneity of purchase rates, Beta(a, b) of drop-out probabilities.
    `alpha` is in the time unit of the data it was fitted to."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True, slots=True)
class Fit:
    params: Params
    log_likelihood: float
    customers: int
    distinct: int
    converged: bool
    iterations: int
    message: str


@dataclass(frozen=True, slots=True)
class Collapsed:
    """Distinct (x, t_x, T) triples and how many customers share each."""

    x: FloatArray
    t_x: FloatArray
    T: FloatArray
    weight: FloatArray


def collapse(x: Any, t_x: Any, T: Any) -> tuple[Collapsed, npt.NDArray[np.intp]]:
    """Group identical triples; also returns, per input row, the index of its triple."""
    stacked = np.column_stack(
        [np.asarray(x, np.float64), np.asarray(t_x, np.float64), np.asarray(T, np.float64)]
    )
    if len(stacked) == 0:
        empty = np.zeros(0)
        return Collapsed(empty, empty, empty, empty), np.zeros(0, np.intp)
    unique, inverse, counts = np.unique(stacked, axis=0, return_inverse=True, return_counts=True)
    return (
        Collapsed(unique[:, 0], unique[:, 1], unique[:, 2], counts.astype(np.float64)),
        inverse.reshape(-1),
    )


def _validate(data: Collapsed) -> None:
    if len(data.x) == 0:
        raise ValueError("no customers to fit")
    if np.any(data.x < 0) or np.any(data.t_x < 0) or np.any(data.t_x > data.T):
        raise ValueError("need 0 <= x and 0 <= t_x <= T")
    if np.any((data.x == 0) & (data.t_x != 0)):
        raise ValueError("t_x must be 0 when x is 0")


def _terms(
    p: Params, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per-row log-likelihood and the weights of its two branches (alive at T, or dropped out
    after the last purchase), which the gradient needs."""
    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    repeat = x > 0
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * math.log(alpha)
    a2 = (
        special.gammaln(a + b)
        + special.gammaln(b + x)
        - special.gammaln(b)
        - special.gammaln(a + b + x)
    )
    a3 = -(r + x) * np.log(alpha + T)
    # For x = 0 the drop-out branch does not exist; b + max(x, 1) - 1 keeps the log finite.
    a4 = np.where(
        repeat,
        math.log(a) - np.log(b + np.maximum(x, 1.0) - 1.0) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    both = np.logaddexp(a3, a4)
    w3 = np.exp(a3 - both)
    w4 = np.where(repeat, np.exp(a4 - both), 0.0)
    return a1 + a2 + both, w3, w4, repeat.astype(np.float64)


def log_likelihood(p: Params, data: Collapsed) -> float:
    ll, *_ = _terms(p, data.x, data.t_x, data.T)
    return float(np.dot(data.weight, ll))


def _objective(theta: FloatArray, data: Collapsed, total: float) -> tuple[float, FloatArray]:
    """Mean negative log-likelihood and its gradient in log-parameters."""
    r, alpha, a, b = np.exp(theta)
    x, t_x, T, w = data.x, data.t_x, data.T, data.weight
    ll, w3, w4, repeat = _terms(Params(r, alpha, a, b), x, t_x, T)
    dig = special.digamma
    d_r = dig(r + x) - dig(r) + math.log(alpha) - w3 * np.log(alpha + T) - w4 * np.log(alpha + t_x)
    d_alpha = r / alpha - w3 * (r + x) / (alpha + T) - w4 * (r + x) / (alpha + t_x)
    d_a = dig(a + b) - dig(a + b + x) + w4 / a
    d_b = (
        dig(a + b)
        + dig(b + x)
        - dig(b)
        - dig(a + b + x)
        - repeat * w4 / (b + np.maximum(x, 1.0) - 1.0)
    )
    grad = np.array(
        [
            r * np.dot(w, d_r),
            alpha * np.dot(w, d_alpha),
            a * np.dot(w, d_a),
            b * np.dot(w, d_b),
        ]
    )
    value = -float(np.dot(w, ll)) / total
    if not math.isfinite(value):
        return math.inf, np.zeros(4)
    return value, -grad / total


def fit(data: Collapsed, *, initial: Params | None = None, max_iterations: int = 500) -> Fit:
    """Maximum-likelihood estimates (L-BFGS-B with the analytic gradient, on log-parameters).

    Times are rescaled to a mean T of about 1 during the search, so that the starting point
    and the tolerances suit any time unit; alpha and the log-likelihood are given back in the
    data's own unit (the rescaling adds x·ln(scale) per customer to the log-likelihood)."""
    _validate(data)
    total = float(data.weight.sum())
    scale = float(np.dot(data.weight, data.T) / total) or 1.0
    scaled = Collapsed(data.x, data.t_x / scale, data.T / scale, data.weight)
    start = initial or Params(1.0, scale, 1.0, 1.0)
    theta0 = np.log([start.r, start.alpha / scale, start.a, start.b])
    result = optimize.minimize(
        _objective,
        theta0,
        args=(scaled, total),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 4,
        options={"maxiter": max_iterations, "ftol": 1e-13, "gtol": 1e-9},
    )
    r, alpha_scaled, a, b = (float(v) for v in np.exp(result.x))
    params = Params(r=r, alpha=alpha_scaled * scale, a=a, b=b)
    ll = -float(result.fun) * total - float(np.dot(data.weight, data.x)) * math.log(scale)
    # A base whose purchase rates barely differ (or whose customers hardly ever drop out) has
    # its maximum at infinity along a ridge: the search then stops on a line-search failure
    # with a vanishing gradient. Such a fit describes the base well and predicts fine.
    flat = bool(np.max(np.abs(result.jac)) < _FLAT_GRADIENT)
    return Fit(
        params=params,
        log_likelihood=ll,
        customers=int(total),
        distinct=len(data.x),
        converged=(bool(result.success) or flat) and math.isfinite(ll),
        iterations=int(result.nit),
        message=str(result.message),
    )


def p_alive(p: Params, x: Any, t_x: Any, T: Any) -> FloatArray:
    """P(the customer has not dropped out by T | x, t_x, T), equation (11) of the paper."""
    x, t_x, T = (np.asarray(v, np.float64) for v in (x, t_x, T))
    log_odds = (
        math.log(p.a)
        - np.log(p.b + np.maximum(x, 1.0) - 1.0)
        + (p.r + x) * (np.log(p.alpha + T) - np.log(p.alpha + t_x))
    )
    # 1 / (1 + exp(log_odds)) without overflow; a customer who never repeated is alive.
    return np.where(x > 0, special.expit(-log_odds), 1.0)


def expected_purchases(p: Params, t: float, x: Any, t_x: Any, T: Any) -> FloatArray:
    """E[purchases in (T, T + t] | x, t_x, T], equation (10) of the paper.

    The paper's ((α+T)/(α+T+t))^(r+x) · 2F1(r+x, b+x; a+b+x-1; t/(α+T+t)) is rewritten with
    Pfaff's transformation as 2F1(r+x, a-1; a+b+x-1; -t/(α+T)): the same number, without the
    overflow of the first form for customers with many purchases."""
    x, t_x, T = (np.asarray(v, np.float64) for v in (x, t_x, T))
    x, t_x, T = np.broadcast_arrays(x, t_x, T)
    c = p.a + p.b + x - 1.0
    with np.errstate(all="ignore"):
        hyp = np.asarray(special.hyp2f1(p.r + x, p.a - 1.0, c, -t / (p.alpha + T)), np.float64)
        failed = ~np.isfinite(hyp)
        if failed.any():
            hyp = hyp.copy()
            hyp[failed] = _hyp_by_series(p, t, x[failed], T[failed])
        value = c / (p.a - 1.0) * (1.0 - hyp) * p_alive(p, x, t_x, T)
    return np.asarray(value, np.float64)


def _hyp_by_series(p: Params, t: float, x: FloatArray, T: FloatArray) -> FloatArray:
    """2F1(r+x, a-1; a+b+x-1; -t/(α+T)) where scipy's hyp2f1 gives up (a first parameter in
    the tens of thousands: a fit whose Gamma has all but collapsed to one purchase rate).

    Evaluated as the paper writes it, ((α+T)/(α+T+t))^(r+x) · 2F1(r+x, b+x; a+b+x-1; w) with
    w = t/(α+T+t): a series of positive terms (no cancellation), summed until the terms no
    longer count; the power is applied in logarithms."""
    first, second, c = p.r + x, p.b + x, p.a + p.b + x - 1.0
    w = t / (p.alpha + T + t)
    term = np.ones_like(x)
    total = np.ones_like(x)
    for k in range(_SERIES_TERMS):
        term = term * (first + k) * (second + k) / ((c + k) * (k + 1.0)) * w
        total = total + term
        if np.all(term <= 1e-17 * total):
            break
    else:
        return np.full_like(x, np.nan)
    return np.exp(np.log(total) - first * np.log1p(t / (p.alpha + T)))


_SERIES_TERMS = 100_000
