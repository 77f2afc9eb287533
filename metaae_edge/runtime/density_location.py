"""A meta-learned location prior for generation (session 30): empirical-Bayes shrinkage of
the sample location towards what the family's meta-training tasks say a task mean is.

A density fitted on 64 support rows is centred on their mean, whose sampling error is
most of every generator's MMD^2 (docs/generation.md, session 28). Across a family's
meta-training tasks of one input size D, the task means (raw units) scatter around a
prior mean ``m`` with covariance ``T = F F^T`` (method of moments: the covariance of the
task means minus their average sampling covariance); a new task's support mean ``x_s``
has sampling covariance ``S = Sigma / n`` (``Sigma`` the support's shrunk covariance, the
input Gaussian of :func:`~.density_blend.fit_input_gaussian`). The normal-normal
posterior mean is ``m + T (T + S)^-1 (x_s - m)``, so every generated row moves by

    shift = -S (T + S)^-1 (x_s - m)

(raw units). Where ``T`` is low-rank (sensors: a channel's mean is its offset at every
time step) the shift removes the support mean's error outside the span of the task means.
The prior is raw units, so it is used only for tasks of the family and input size it was
learned on, and a support mean implausible under it (Mahalanobis distance beyond
:func:`_plausible`) gets no shift. Torch-free (numpy); bundles store only the shift
(``location_shift`` in ``density.npz``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LocationPrior", "fit_prior", "load_priors", "posterior_shift", "sampling_cov"]

#: most prior directions kept (the top eigenvectors of ``T``)
MAX_RANK = 32


@dataclass(frozen=True)
class LocationPrior:
    """``N(mean, factor factor^T)`` over task means of one input size, raw units."""

    mean: np.ndarray  # (D,)
    factor: np.ndarray  # (D, r)

    def to_json(self) -> dict:
        return {"mean": [float(f"{v:.6g}") for v in self.mean],
                "factor": [[float(f"{v:.6g}") for v in row] for row in self.factor]}

    @classmethod
    def from_json(cls, obj: dict) -> LocationPrior:
        mean = np.asarray(obj["mean"], np.float64)
        factor = np.asarray(obj["factor"], np.float64).reshape(len(mean), -1)
        return cls(mean, factor)


def sampling_cov(rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """``Sigma / n``: the sampling covariance of the mean of ``rows`` (n, D), ``Sigma``
    the shrunk input-space Gaussian's covariance."""
    from .density_blend import fit_input_gaussian

    x = np.asarray(rows, np.float64).reshape(len(rows), -1)
    chol = fit_input_gaussian(x, seed)[1].astype(np.float64)
    return chol @ chol.T / len(x)


def fit_prior(means: np.ndarray, covs: np.ndarray) -> LocationPrior:
    """The prior from task means (t, D) and their sampling covariances (t, D, D):
    ``T`` = cov(means) - mean(covs), negative eigenvalues dropped, top
    :data:`MAX_RANK` kept."""
    mu = np.asarray(means, np.float64)
    t = np.cov(mu.T).reshape(mu.shape[1], mu.shape[1]) - np.mean(covs, 0)
    w, u = np.linalg.eigh((t + t.T) / 2)
    keep = np.argsort(w)[::-1][:MAX_RANK]
    keep = keep[w[keep] > 1e-12 * max(float(w.max()), 1e-300)]
    return LocationPrior(mu.mean(0), u[:, keep] * np.sqrt(w[keep]))


def _plausible(d2: float, dim: int) -> bool:
    """``d2`` (a chi^2 variable of ``dim`` degrees under the prior) below twice its
    99.9% quantile (Wilson-Hilferty, z = 3.09; twice: the prior and the support's
    covariance are estimates, and task means need not be Gaussian)."""
    k = 2.0 / (9.0 * dim)
    return d2 <= 2 * dim * (1 - k + 3.09 * np.sqrt(k)) ** 3


def posterior_shift(support: np.ndarray, prior: LocationPrior, seed: int = 0
                    ) -> np.ndarray | None:
    """The raw-unit shift ``-S (T + S)^-1 (x_s - m)`` of ``support`` (n, ...) rows under
    ``prior``; None when the input size differs or the support mean is implausible."""
    x = np.asarray(support, np.float64).reshape(len(support), -1)
    if x.shape[1] != len(prior.mean) or len(x) < 2:
        return None
    s = sampling_cov(x, seed)
    a = prior.factor @ prior.factor.T + s
    d = x.mean(0) - prior.mean
    sol = np.linalg.solve(a + 1e-12 * np.trace(a) / len(a) * np.eye(len(a)), d)
    if not _plausible(float(d @ sol), len(d)):
        return None
    return -(s @ sol)


def load_priors(path: str | Path) -> dict[str, dict[int, LocationPrior]]:
    """``{family: {input size: prior}}`` from a JSON written by
    ``scripts/generation_prior.py`` (only the input sizes its rule kept)."""
    obj = json.loads(Path(path).read_text())
    return {fam: {int(d): LocationPrior.from_json(p) for d, p in sizes.items()}
            for fam, sizes in obj.get("families", {}).items()}
