"""Per-component residual noise: one residual Gaussian per latent mixture component.

The mixture-of-factor-analysers view of a bundle's generator: a latent component k
decodes through ``decoder.onnx`` and carries its own residual covariance R_k, so the
noise around the decoded means may differ between the clusters of the data. With a few
dozen support rows per component, R_k cannot be estimated alone; it is shrunk towards the
pooled residual Gaussian (``fit_residual``: one shrunk covariance over every row) as a
conjugate prior worth ``nu`` pseudo-rows:

    m_k = (n_k mbar_k + nu m) / (n_k + nu),  R_k = (n_k S_k + nu R) / (n_k + nu)

with n_k, mbar_k, S_k the responsibility-weighted count, mean and covariance of the
support residuals of component k (responsibilities of their latent codes under the fitted
mixture). ``nu`` is chosen from :data:`PRIOR_ROWS` by ``folds``-fold held-out
log-likelihood of the residuals, ``log sum_k resp_ik N(r_i; m_k, R_k)``; ``nu = inf`` is
the pooled model, so the per-component residuals are kept only when they predict held-out
support residuals better. Torch-free (numpy), like :mod:`.density`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .density import (
    _LOG2PI,
    TARGETS,
    Density,
    _covariance,
    _cv_score,
    _log_prob,
    pooled_residual,
)
from .density_factor import choose_factor_rank, factor_covariance

__all__ = ["PRIOR_ROWS", "component_residuals", "fit_component_residuals", "fit_residuals",
           "responsibilities"]

#: candidate prior strengths (pseudo-rows of the pooled residual); inf: the pooled model
PRIOR_ROWS = (2.0, 8.0, 32.0, 128.0, math.inf)


def responsibilities(density: Density, codes: np.ndarray) -> np.ndarray:
    """(n, K) posterior component probabilities of ``codes`` under ``density``."""
    x = np.asarray(codes, np.float64).reshape(len(codes), -1)
    logp = np.stack([_log_prob(x, np.ones(1), density.means[k:k + 1],
                               density.chols[k:k + 1]) + math.log(max(w, 1e-300))
                     for k, w in enumerate(density.weights)], 1)
    logp -= logp.max(1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(1, keepdims=True)


def component_residuals(resid: np.ndarray, resp: np.ndarray, mean: np.ndarray,
                        cov: np.ndarray, nu: float) -> tuple[np.ndarray, np.ndarray]:
    """``(means (K, d), covs)`` of the components, shrunk towards the pooled ``mean`` /
    ``cov`` with ``nu`` pseudo-rows; ``cov`` (d,) is a diagonal (variances), giving (K, d)
    variances, else (d, d) giving (K, d, d)."""
    x = np.asarray(resid, np.float64)
    means, covs = [], []
    for k in range(resp.shape[1]):
        r = resp[:, k]
        n_k = float(r.sum())
        if math.isinf(nu) or n_k < 1e-9:
            means.append(mean)
            covs.append(cov)
            continue
        mbar = r @ x / n_k
        xc = x - mbar
        s = (xc * r[:, None]).T @ xc / n_k if cov.ndim == 2 else r @ (xc * xc) / n_k
        means.append((n_k * mbar + nu * mean) / (n_k + nu))
        covs.append((n_k * s + nu * cov) / (n_k + nu))
    return np.stack(means), np.stack(covs)


def _loglik(resid: np.ndarray, resp: np.ndarray, means: np.ndarray,
            covs: np.ndarray) -> np.ndarray:
    """Per-row ``log sum_k resp_ik N(r_i; means_k, covs_k)``."""
    parts = []
    for k in range(len(means)):
        if covs.ndim == 2:  # diagonal variances
            z = (resid - means[k]) ** 2 / covs[k]
            lp = -0.5 * (resid.shape[1] * _LOG2PI + np.log(covs[k]).sum() + z.sum(1))
        else:
            lp = _log_prob(resid, np.ones(1), means[k:k + 1],
                           np.linalg.cholesky(covs[k])[None])
        parts.append(lp + np.log(np.maximum(resp[:, k], 1e-300)))
    a = np.stack(parts, 1)
    top = a.max(1, keepdims=True)
    return (top + np.log(np.exp(a - top).sum(1, keepdims=True)))[:, 0]


def _pooled(x: np.ndarray, shrink: tuple[float, str] | None
            ) -> tuple[np.ndarray, np.ndarray]:
    """The pooled residual Gaussian as :func:`~.density.fit_residual` fits it, at a given
    (shrinkage, target) (the one it chose on all rows; None: diagonal; ``(rank,
    "factor")``: the factor analyser of :mod:`.density_factor`)."""
    mean = x.mean(0)
    if shrink is None:
        return mean, np.maximum(x.var(0), 1e-12)
    if shrink[1] == "factor":
        return mean, factor_covariance(x, int(shrink[0]))
    floor = 1e-4 * float(x.var(0).mean()) + 1e-8
    return mean, _covariance(x, np.ones(len(x)), mean, shrink[0], floor, shrink[1])


def fit_component_residuals(resid: np.ndarray, resp: np.ndarray,
                            shrink: tuple[float, str] | None, *, seed: int = 0,
                            folds: int = 4
                            ) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """``(means, chols, info)`` of per-component residuals of ``resid`` (n, d) with
    responsibilities ``resp`` (n, K), ``nu`` by held-out log-likelihood; ``(None, None,
    info)`` when the pooled model (``nu = inf``) wins or K = 1. ``shrink``: the pooled
    residual's (shrinkage, target) (:func:`~.density.pooled_residual`), None when it is
    diagonal. ``chols`` are (K, d, d) lower Cholesky factors, or (K, d) stds (diagonal)."""
    x = np.asarray(resid, np.float64).reshape(len(resid), -1)
    if resp.shape[1] < 2:
        return None, None, {}
    idx = np.random.default_rng(seed).permutation(len(x))
    parts = np.array_split(idx, max(2, min(folds, len(x) // 4)))
    scores = {}
    for nu in PRIOR_ROWS:
        fold_ll = []
        for part in parts:
            train = np.setdiff1d(idx, part)
            mean, cov = _pooled(x[train], shrink)
            m, c = component_residuals(x[train], resp[train], mean, cov, nu)
            fold_ll.append(_loglik(x[part], resp[part], m, c).mean())
        scores[nu] = float(np.mean(fold_ll))
    nu = max(scores, key=scores.get)
    info = {"residual_prior_rows": "inf" if math.isinf(nu) else nu,
            "residual_cv_loglik": {("inf" if math.isinf(k) else f"{k:g}"): round(v, 4)
                                   for k, v in scores.items()}}
    if math.isinf(nu):
        return None, None, info
    mean, cov = _pooled(x, shrink)
    m, c = component_residuals(x, resp, mean, cov, nu)
    chols = np.sqrt(c) if shrink is None else np.linalg.cholesky(c)
    return m.astype(np.float32), chols.astype(np.float32), info


def _factor(x: np.ndarray, shrink: tuple[float, str], seed: int
            ) -> tuple[tuple[float, str], np.ndarray | None, dict[str, Any]]:
    """``(shrink, chol, info)``: the factor analyser's ``(rank, "factor")`` and Cholesky
    factor when its held-out likelihood beats the shrunk Gaussian's (``shrink``) on the
    same folds, else ``shrink`` and None."""
    folds = max(2, min(4, len(x) // 4))
    score = _cv_score(x, 1, shrink[0], folds, seed, shrink[1])
    rank, info = choose_factor_rank(x, score, seed=seed, folds=folds)
    if rank is None:
        return shrink, None, info
    chol = np.linalg.cholesky(factor_covariance(x, rank)).astype(np.float32)
    return (float(rank), "factor"), chol, info


def _forced(x: np.ndarray, shrink: tuple[float, str], rank: int
            ) -> tuple[tuple[float, str], np.ndarray | None, dict[str, Any]]:
    """:func:`_factor` with the rank given (session 31: chosen for generation, by MMD^2
    on val tasks, not by likelihood), when the rows allow it (as 4 folds would)."""
    if not 0 < rank <= min(x.shape[1] - 1, len(x) - len(x) // 4 - 2):
        return shrink, None, {}
    chol = np.linalg.cholesky(factor_covariance(x, rank)).astype(np.float32)
    return (float(rank), "factor"), chol, {"residual_factor_rank": rank,
                                           "residual_factor_forced": True}


def fit_residuals(resid: np.ndarray, resp: np.ndarray | None, scale: np.ndarray, *,
                  seed: int = 0, factor: bool = False, factor_rank: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None,
                             dict[str, Any]]:
    """``(mean, chol, means, chols, info)``: the pooled residual Gaussian and (``resp``
    given, K > 1) the per-component ones, fitted on residuals divided by ``scale`` (the
    support's per-value std, raw units), where the scaled identity is a meaningful
    shrinkage target (the input-space Ledoit-Wolf baseline's, in the task's model space)
    beside the diagonal, then scaled back to raw units. ``means`` / ``chols`` are None
    when the pooled model predicts held-out support residuals at least as well.
    ``factor``: the pooled residual may also be a factor analyser (session 30 (b),
    :mod:`.density_factor`), rank by held-out likelihood; then the per-component ones
    shrink towards it. ``factor_rank``: that factor analyser with this rank, whatever
    the likelihood says (``factor`` is then ignored)."""
    x = np.asarray(resid, np.float64).reshape(len(resid), -1)
    s = np.asarray(scale, np.float64).reshape(-1)
    s = np.where(s > 1e-12 * max(float(s.max()), 1e-30), s, 1.0)
    mean, chol, shrink = pooled_residual(x / s, seed=seed, targets=TARGETS)
    info: dict[str, Any] = {} if shrink is None else {"residual_shrinkage": list(shrink)}
    if (factor or factor_rank) and shrink is not None:
        shrink, fa_chol, more = _factor(x / s, shrink, seed) if not factor_rank else \
            _forced(x / s, shrink, int(factor_rank))
        info.update(more)
        chol = chol if fa_chol is None else fa_chol
    means = chols = None
    if resp is not None:
        means, chols, more = fit_component_residuals(x / s, resp, shrink, seed=seed)
        info.update(more)
    back = s.astype(np.float32)  # diag(s) L: rows scaled, still lower triangular
    mean, chol = mean * back, (chol * back if chol.ndim == 1 else chol * back[:, None])
    if means is not None:
        means = means * back
        chols = chols * back if chols.ndim == 2 else chols * back[None, :, None]
    return mean, chol, means, chols, info
