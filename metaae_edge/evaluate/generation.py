"""Judging generated samples against held-out real rows, and the two baselines.

Metrics (all computed in one space per task, the task's model space: its normaliser fitted
on the support; generated and real rows are mapped the same way):

* :func:`mmd2`: the unbiased squared maximum mean discrepancy with an RBF kernel whose
  bandwidth is the median pairwise distance of the held-out rows (:func:`median_bandwidth`,
  the median heuristic), the same bandwidth for every method of a task. 0 in expectation
  when both sets come from one distribution; lower is better.
* :func:`knn_precision_recall` (Kynkäänniemi et al. 2019): precision is the share of
  generated rows inside the k-NN ball of some real row (are samples realistic?), recall
  the share of real rows inside the k-NN ball of some generated row (is the data covered?).

Baselines, fitted on the same support rows the bundle's density was fitted on:

* :func:`input_gaussian`: one Gaussian in input space (Ledoit-Wolf shrunk covariance; with
  64 rows of 56-64 features the plain sample covariance is singular).
* :func:`pca_sampling`: probabilistic PCA: a Gaussian in the top-q PCA subspace plus
  isotropic residual noise (the mean of the remaining eigenvalues), q chosen by 4-fold
  held-out PPCA log-likelihood on the support (never on the evaluation rows).
"""

from __future__ import annotations

import numpy as np

__all__ = ["input_gaussian", "knn_precision_recall", "median_bandwidth", "mmd2",
           "pca_sampling", "sample_metrics"]


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0.0)


def median_bandwidth(x: np.ndarray) -> float:
    """The median heuristic: the median distance between distinct rows of ``x``."""
    x = np.asarray(x, np.float64)
    d = np.sqrt(_sqdist(x, x)[np.triu_indices(len(x), 1)])
    med = float(np.median(d))
    return med if med > 0 else 1.0


def mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 between rows of ``x`` and ``y`` (RBF kernel, ``exp(-d^2 / 2 s^2)``;
    ``bandwidth`` s defaults to the median heuristic on ``y``)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    s = median_bandwidth(y) if bandwidth is None else float(bandwidth)
    g = -1.0 / (2 * s * s)
    kxx, kyy, kxy = (np.exp(g * _sqdist(a, b)) for a, b in ((x, x), (y, y), (x, y)))
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row of ``x`` to its k-th nearest other row."""
    d = np.sqrt(_sqdist(x, x))
    np.fill_diagonal(d, np.inf)
    return np.sort(d, 1)[:, k - 1]


def knn_precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3
                         ) -> tuple[float, float]:
    """``(precision, recall)`` of ``fake`` against ``real`` with k-NN balls."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    d = np.sqrt(_sqdist(fake, real))  # (fake, real)
    precision = float((d <= _radii(real, k)[None, :]).any(1).mean())
    recall = float((d <= _radii(fake, k)[:, None]).any(0).mean())
    return precision, recall


def input_gaussian(support: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` rows from a Gaussian fitted to ``support`` in input space (Ledoit-Wolf)."""
    from sklearn.covariance import LedoitWolf

    x = np.asarray(support, np.float64)
    cov = LedoitWolf().fit(x).covariance_
    return np.random.default_rng(seed).multivariate_normal(x.mean(0), cov, size=n,
                                                           method="cholesky")


def _pca_q(x: np.ndarray, seed: int) -> int:
    """PPCA subspace size by 4-fold held-out log-likelihood on ``x``."""
    from sklearn.decomposition import PCA

    idx = np.random.default_rng(seed).permutation(len(x))
    folds = np.array_split(idx, 4)
    top = min(x.shape[1] - 1, len(x) - len(folds[0]) - 2)
    best, best_q = -np.inf, 1
    for q in range(1, max(top, 1) + 1):
        fits = [PCA(q).fit(x[np.setdiff1d(idx, f)]) for f in folds]
        if min(p.noise_variance_ for p in fits) <= 1e-10 * x.var(0).sum():
            break  # the residual vanished (constant columns): no density beyond this q
        ll = np.mean([p.score(x[f]) for p, f in zip(fits, folds)])
        if ll > best:
            best, best_q = ll, q
    return best_q


def pca_sampling(support: np.ndarray, n: int, seed: int, q: int | None = None
                 ) -> tuple[np.ndarray, int]:
    """``(rows, q)``: ``n`` rows of probabilistic PCA fitted to ``support``."""
    from sklearn.decomposition import PCA

    x = np.asarray(support, np.float64)
    q = _pca_q(x, seed) if q is None else q
    pca = PCA(q).fit(x)
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n, q)) * np.sqrt(pca.explained_variance_)
    noise = rng.standard_normal((n, x.shape[1])) * np.sqrt(max(pca.noise_variance_, 0.0))
    return pca.mean_ + scores @ pca.components_ + noise, q


def sample_metrics(samples: np.ndarray, heldout: np.ndarray, bandwidth: float,
                   k: int = 3) -> dict[str, float]:
    """MMD^2 and k-NN precision / recall of ``samples`` against ``heldout``."""
    precision, recall = knn_precision_recall(heldout, samples, k)
    return {"mmd2": mmd2(samples, heldout, bandwidth), "precision": precision,
            "recall": recall}
