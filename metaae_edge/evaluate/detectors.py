"""The classical one-class detectors a practitioner would run, tuned without labels.

Every detector has one interface: ``fit(support, seed) -> scorer`` and
``scorer(x) -> scores`` (higher = more anomalous). Fitting sees only the normal support
rows: hyperparameters are fixed with a stated reason or chosen on a held-out split of
the support by a criterion that needs no anomaly labels. None looks at the query.
All detectors standardise columns on the support first (constant columns get a floored
std, as :class:`~metaae_edge.tasks.Normalizer` does). numpy + scikit-learn only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..tasks.base import Normalizer

__all__ = ["DETECTORS", "Detector", "Scorer", "detector_aucs", "fit_gmm",
           "fit_ocsvm", "pca_latent_size"]

Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Detector:
    """A registered detector: ``fit(support, seed)`` returns a scorer."""

    name: str
    description: str
    fit_fn: Callable[[np.ndarray, int], Scorer]

    def fit(self, support: np.ndarray, seed: int = 0) -> Scorer:
        """Fit on normal rows ``support`` (N, D); the scorer standardises like the fit."""
        norm = Normalizer.fit(np.asarray(support, np.float64))
        seed = int(seed) % 2**32  # task seeds are 63-bit; scikit-learn takes 32
        inner = self.fit_fn(norm.transform(support).astype(np.float64), seed)
        return lambda x: np.asarray(inner(norm.transform(x).astype(np.float64)), np.float64)


def _iforest(z: np.ndarray, seed: int) -> Scorer:
    """scikit-learn defaults (the one-liner a user tries), 200 trees for a stabler score."""
    from sklearn.ensemble import IsolationForest

    model = IsolationForest(n_estimators=200, random_state=seed).fit(z)
    return lambda x: -model.score_samples(x)


def fit_ocsvm(z: np.ndarray, seed: int = 0):
    """The fitted scikit-learn ``OneClassSVM`` of the ``ocsvm`` detector: RBF, nu = 0.05,
    gamma = 1 / median squared pairwise distance of (up to 512 of) the rows ``z``."""
    from sklearn.svm import OneClassSVM

    sub = z[:512]
    d2 = ((sub[:, None, :] - sub[None, :, :]) ** 2).sum(-1)
    med = float(np.median(d2[np.triu_indices(len(sub), 1)])) if len(sub) > 1 else 1.0
    return OneClassSVM(kernel="rbf", nu=0.05, gamma=1.0 / max(med, 1e-12)).fit(z)


def _ocsvm(z: np.ndarray, seed: int) -> Scorer:
    """RBF one-class SVM (:func:`fit_ocsvm`): minus its ``score_samples``."""
    model = fit_ocsvm(z, seed)
    return lambda x: -model.score_samples(x)


def fit_gmm(z: np.ndarray, seed: int = 0):
    """The fitted scikit-learn ``GaussianMixture`` of the ``gmm`` detector: components
    (1-4) and covariance type chosen by BIC on the rows ``z``.

    Full covariances are tried only with more than 2 rows per parameter-ish (n > 2 D):
    below that BIC always rejects them and the fits only cost time.
    """
    from sklearn.mixture import GaussianMixture

    n, d = z.shape
    types = ["diag", "full"] if n > 2 * d else ["diag"]
    best, best_bic = None, np.inf
    for cov in types:
        for m in range(1, 5):
            if m * 2 > n:
                break
            g = GaussianMixture(m, covariance_type=cov, reg_covar=1e-3, random_state=seed,
                                n_init=1, max_iter=200).fit(z)
            bic = g.bic(z)
            if bic < best_bic:
                best, best_bic = g, bic
    return best


def _gmm(z: np.ndarray, seed: int) -> Scorer:
    """Gaussian mixture (:func:`fit_gmm`): minus its log-density."""
    best = fit_gmm(z, seed)
    return lambda x: -best.score_samples(x)


def _knn(z: np.ndarray, seed: int) -> Scorer:
    """Distance to the k-th nearest support row, k = 5 (pyod / ADBench default).

    k is fixed because a normal-only validation split cannot rank k: every k's score on
    held-out normals only shifts monotonically, and nothing in it says how anomalies move.
    """
    from sklearn.neighbors import NearestNeighbors

    k = min(5, len(z))
    nn = NearestNeighbors(n_neighbors=k).fit(z)
    return lambda x: nn.kneighbors(x)[0][:, -1]


def _ppca_loglik(train: np.ndarray, val: np.ndarray, q_max: int) -> np.ndarray:
    """Held-out log-likelihood per row under probabilistic PCA (Tipping & Bishop) for
    q = 0..q_max, shape (q_max + 1, len(val))."""
    mean = train.mean(axis=0)
    _, s, vt = np.linalg.svd(train - mean, full_matrices=False)
    lam = s**2 / max(len(train) - 1, 1)
    d = train.shape[1]
    v = val - mean
    proj = (v @ vt.T) ** 2  # (n_val, r)
    sq = (v**2).sum(axis=1)
    floor = 1e-6 * max(float(lam.sum()) / d, 1e-12)
    out = []
    for q in range(q_max + 1):
        rest = lam[q:]
        sigma2 = max(float(rest.sum()) / max(d - q, 1), floor)
        lq = np.maximum(lam[:q], sigma2)
        quad = (sq - (proj[:, :q] * (1.0 - sigma2 / lq)).sum(axis=1)) / sigma2
        logdet = float(np.log(lq).sum()) + (d - q) * np.log(sigma2)
        out.append(-0.5 * (d * np.log(2 * np.pi) + logdet + quad))
    return np.array(out)


def pca_latent_size(z: np.ndarray, seed: int = 0, val_frac: float = 0.25) -> int:
    """The PCA latent size chosen on a held-out quarter of the normal rows.

    Criterion: held-out probabilistic-PCA log-likelihood, one-standard-error rule (the
    smallest q within one standard error of the best). Held-out *reconstruction error*
    cannot choose: it keeps falling as q grows. The PPCA likelihood charges the model for
    the noise it leaves out and for the variance it spends on noise directions, so it
    peaks at the data's rank; no anomaly label is needed.
    """
    n = len(z)
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(2, int(round(val_frac * n)))
    val, train = z[perm[:n_val]], z[perm[n_val:]]
    q_max = max(0, min(len(train) - 2, z.shape[1] - 1))
    ll = _ppca_loglik(train, val, q_max)
    mean = ll.mean(axis=1)
    best = int(np.argmax(mean))
    se = float(ll[best].std(ddof=1) / np.sqrt(ll.shape[1]))
    return int(np.flatnonzero(mean >= mean[best] - se)[0])


def _pca(z: np.ndarray, seed: int) -> Scorer:
    """Squared reconstruction error of PCA at :func:`pca_latent_size`, fit on all rows."""
    q = max(pca_latent_size(z, seed), 1) if z.shape[1] > 1 else 0
    mean = z.mean(axis=0)
    basis = np.linalg.svd(z - mean, full_matrices=False)[2][:q]

    def score(x: np.ndarray) -> np.ndarray:
        c = x - mean
        return ((c - (c @ basis.T) @ basis) ** 2).mean(axis=1)

    score.latent_size = q  # type: ignore[attr-defined]
    return score


def _mahalanobis(z: np.ndarray, seed: int) -> Scorer:
    """Squared Mahalanobis distance under one Gaussian, Ledoit-Wolf shrunk covariance."""
    from sklearn.covariance import LedoitWolf

    model = LedoitWolf().fit(z)
    return model.mahalanobis


DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector("iforest", "IsolationForest, 200 trees, scikit-learn defaults", _iforest),
        Detector("ocsvm", "one-class SVM, RBF, nu=0.05, median-heuristic gamma", _ocsvm),
        Detector("gmm", "Gaussian mixture, components + covariance by BIC", _gmm),
        Detector("knn", "distance to the 5th nearest support row", _knn),
        Detector("pca", "PCA reconstruction error, latent size by held-out PPCA "
                 "likelihood", _pca),
        Detector("mahalanobis", "single Gaussian, Ledoit-Wolf covariance", _mahalanobis),
    )
}


def detector_aucs(support: np.ndarray, query: np.ndarray, labels: np.ndarray,
                  seed: int = 0, names: list[str] | None = None) -> dict[str, Any]:
    """ROC-AUC of each detector: fit on ``support`` only; labels are used only to score."""
    from sklearn.metrics import roc_auc_score

    out: dict[str, Any] = {}
    for name in names or list(DETECTORS):
        scores = DETECTORS[name].fit(support, seed)(query)
        scores = np.nan_to_num(scores, nan=np.inf, posinf=1e300, neginf=-1e300)
        out[name] = float(roc_auc_score(labels, scores))
    return out
