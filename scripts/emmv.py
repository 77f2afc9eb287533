"""Excess-Mass and Mass-Volume curves of an anomaly score (Goix 2016, "How to evaluate
the quality of unsupervised anomaly detection algorithms?"), label-free (r30 study).

Scores follow this repository's convention: *higher is more anomalous*, so the level
sets are ``{x : s(x) <= u}``. Volumes are Monte-Carlo estimates from scores of uniform
samples over a bounding box, as a *fraction of the box* (so the box's size cancels, and
draws over different feature subsets average on one scale). Masses are fractions of the
held-out normal rows.

- ``mv_curve``: for each mass ``alpha``, the volume of the smallest level set holding at
  least ``alpha`` of the held-out rows. Lower is better.
- ``em_curve``: ``EM(t) = max_u P_hold(s < u) - t * Vol(s < u)`` (and 1 at ``t = 0``).
  Higher is better. With volumes as box fractions, ``t`` is a density relative to the
  uniform density on the box.
- The areas follow Goix's ``em_bench_high.py``: MV over ``alpha`` in [0.9, 0.99); EM over
  ``t`` in [0, 100) until ``EM`` first falls to :data:`EM_LEVEL`.
"""

from __future__ import annotations

import numpy as np

ALPHAS = np.arange(0.9, 0.99, 0.001)
T_GRID = np.linspace(0.0, 100.0, 5001)
EM_LEVEL = 0.9


def mv_curve(s_hold: np.ndarray, s_unif: np.ndarray, alphas=ALPHAS) -> np.ndarray:
    """Box-fraction volume of ``{s <= u_alpha}``, ``u_alpha`` the smallest held-out score
    with at least ``alpha`` of the held-out rows at or below it."""
    s = np.sort(np.asarray(s_hold, np.float64))
    k = np.clip(np.ceil(np.asarray(alphas) * len(s) - 1e-9).astype(int), 1, len(s))
    u = s[k - 1]
    su = np.sort(np.asarray(s_unif, np.float64))
    return np.searchsorted(su, u, side="right") / len(su)


def em_curve(s_hold: np.ndarray, s_unif: np.ndarray, ts=T_GRID) -> np.ndarray:
    """``EM(t)`` on ``ts``: the upper envelope over thresholds ``u`` (the held-out scores
    and +inf) of ``mass(s < u) - t * vol(s < u)``; ``EM(0) = 1``."""
    s = np.asarray(s_hold, np.float64)
    u = np.append(np.unique(s), np.inf)
    mass = np.searchsorted(np.sort(s), u, side="left") / len(s)
    vol = np.searchsorted(np.sort(np.asarray(s_unif, np.float64)), u, side="left") / len(s_unif)
    ts = np.asarray(ts, np.float64)
    em = (mass[None, :] - ts[:, None] * vol[None, :]).max(1)
    em[ts == 0] = 1.0
    return em


def mv_area(s_hold, s_unif, alphas=ALPHAS) -> float:
    return float(np.trapezoid(mv_curve(s_hold, s_unif, alphas), alphas))


def em_area(s_hold, s_unif, ts=T_GRID, level: float = EM_LEVEL) -> float:
    """Area under ``EM`` from 0 to the first ``t`` where it is <= ``level`` (the whole
    grid if it never is), as Goix's ``em``."""
    em = em_curve(s_hold, s_unif, ts)
    below = np.nonzero(em <= level)[0]
    stop = int(below[0]) + 1 if len(below) and below[0] > 0 else len(ts)
    return float(np.trapezoid(em[:stop], ts[:stop]))


def feature_draws(d: int, n_draws: int, max_features: int, seed: int) -> list[np.ndarray]:
    """Goix's feature sub-sampling: ``n_draws`` random subsets of ``max_features`` of the
    ``d`` columns (one draw of all columns when ``d <= max_features``)."""
    if d <= max_features:
        return [np.arange(d)]
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(d, max_features, replace=False)) for _ in range(n_draws)]


def uniform_box(rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` uniform samples over the bounding box of ``rows`` (a constant column keeps
    its value)."""
    lo, hi = rows.min(0), rows.max(0)
    return np.random.default_rng(seed).uniform(lo, hi, size=(n, rows.shape[1]))
