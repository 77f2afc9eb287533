"""A factor-analysis (low-rank + diagonal) residual Gaussian, session 30 (b).

The bundle's decoder is fixed when the density is fitted; on digits it is a closed-form
PCA-6 candidate chosen for reconstruction, and the input-space directions it leaves out
live in the residual. The shrunk residual covariance of :mod:`.density`
(``(1 - a) S + a T``) shrinks every residual direction alike; a factor analyser,
``R = W W^T + diag(psi)`` with rank ``r``, keeps the residual's few strong directions and
models the rest as independent noise, so "latent mixture through the PCA-q decoder +
factor-analysis residual" contains probabilistic PCA of size q + r (the PCA-sampling
baseline's model class, diagonal instead of isotropic noise).

:func:`choose_factor_rank` compares ranks :data:`RANKS` with the shrunk Gaussian on the
same held-out folds of the (standardised) residuals by mean log-likelihood per row;
:func:`factor_covariance` fits one by EM (Ghahramani & Hinton 1996). The result is an
ordinary covariance, stored through its Cholesky factor in the existing ``residual_chol``
/ ``residual_chols`` keys: the runtime samples it as before, no new ``density.npz`` key.
Torch-free (numpy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .density import _LOG2PI

__all__ = ["RANKS", "choose_factor_rank", "factor_covariance"]

#: candidate factor ranks (capped by the rows and values available)
RANKS = (1, 2, 4, 8, 16, 32)


def factor_covariance(x: np.ndarray, rank: int, iters: int = 200) -> np.ndarray:
    """``W W^T + diag(psi)`` of a rank-``rank`` factor analyser fitted to rows ``x``
    (n, d) by EM from the top-``rank`` principal directions; ``psi`` floored at 1e-4 of
    the mean variance."""
    x = np.asarray(x, np.float64)
    xc = x - x.mean(0)
    s = xc.T @ xc / len(x)
    d = s.shape[0]
    floor = 1e-4 * float(np.diag(s).mean()) + 1e-10
    vals, vecs = np.linalg.eigh(s)
    top = np.argsort(vals)[::-1][:rank]
    noise = max(float(vals[np.argsort(vals)[::-1][rank:]].mean()) if rank < d else floor,
                floor)
    w = vecs[:, top] * np.sqrt(np.maximum(vals[top] - noise, floor))
    psi = np.maximum(np.diag(s) - (w * w).sum(1), floor)
    prev = -np.inf
    for _ in range(iters):
        # E step through the Woodbury identity: (W W^T + Psi)^-1 W = Psi^-1 W M^-1
        wp = w / psi[:, None]
        m = np.eye(rank) + w.T @ wp
        beta = np.linalg.solve(m, wp.T)  # (r, d) = W^T C^-1
        ezz = np.linalg.inv(m) + beta @ s @ beta.T  # E[z z^T], averaged over rows
        w = s @ beta.T @ np.linalg.inv(ezz)
        psi = np.maximum(np.diag(s) - (w * (s @ beta.T)).sum(1), floor)
        ll = _gauss_loglik_cov(s, w @ w.T + np.diag(psi))
        if ll - prev < 1e-7 * max(abs(ll), 1.0):
            break
        prev = ll
    return w @ w.T + np.diag(psi)


def _gauss_loglik_cov(s: np.ndarray, cov: np.ndarray) -> float:
    """Mean log-likelihood per row of zero-mean rows with scatter ``s`` under ``cov``."""
    chol = np.linalg.cholesky(cov)
    logdet = 2 * np.log(np.diagonal(chol)).sum()
    return -0.5 * (len(s) * _LOG2PI + logdet + float(np.trace(np.linalg.solve(cov, s))))


def _heldout(train: np.ndarray, test: np.ndarray, rank: int) -> float:
    """Mean held-out log-likelihood per row of ``test`` under the rank-``rank`` factor
    analyser fitted on ``train`` (its mean too)."""
    mean = train.mean(0)
    cov = factor_covariance(train, rank)
    tc = test - mean
    return _gauss_loglik_cov(tc.T @ tc / len(test), cov)


def choose_factor_rank(x: np.ndarray, shrunk_score: float, *, seed: int = 0,
                       folds: int = 4) -> tuple[int | None, dict[str, Any]]:
    """``(rank, info)``: the factor rank whose ``folds``-fold held-out log-likelihood of
    rows ``x`` beats ``shrunk_score`` (the shrunk Gaussian's on the same folds, as
    :func:`~.density.fit_density` splits them: seeded permutation, ``array_split``), or
    None when none does (then the shrunk Gaussian stays)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    folds = max(2, min(folds, len(x) // 4))
    idx = np.random.default_rng(seed).permutation(len(x))
    parts = np.array_split(idx, folds)
    cap = min(x.shape[1] - 1, len(x) - len(parts[0]) - 2)
    scores: dict[int, float] = {}
    for rank in (r for r in RANKS if r <= cap):
        scores[rank] = float(np.mean([_heldout(x[np.setdiff1d(idx, p)], x[p], rank)
                                      for p in parts]))
    best = max(scores, key=scores.get) if scores else None
    info = {"residual_factor_cv_loglik": {str(r): round(v, 4) for r, v in scores.items()},
            "residual_shrunk_cv_loglik": round(float(shrunk_score), 4)}
    if best is None or scores[best] <= shrunk_score:
        return None, info
    return best, {**info, "residual_factor_rank": best}
