#!/usr/bin/env python
"""Cache the r28 study's extra terms per unit: PCA at the uncapped PPCA size, RBF Parzen
(raw and whitened) and the OC-SVM on whitened rows.

The units are those of ``scripts/cache_detector_terms.py`` (same names, same fit rows:
the support minus the 20% threshold hold-out, model space). Per term of :data:`TERMS`
the held-out std (floored at 1e-3 as ``_scales``), the held-out and the query scores are
stored as ``NAME@sd`` / ``NAME@hold`` / ``NAME@query``, plus ``_labels``. The scores are
computed in float64 numpy (:func:`kernel_terms`); nothing here chooses anything.

Example::

    OMP_NUM_THREADS=1 nice -n 10 python scripts/cache_kernel_terms.py --out /tmp/kernel_terms
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cache_detector_terms import run_cli  # noqa: E402

TERMS = ("pca-ppca", "parzen", "parzen-white", "ocsvm-white")


def median_gamma(z: np.ndarray) -> float:
    """1 / median squared pairwise distance of (up to 512 of) the rows (the ocsvm's)."""
    sub = z[:512]
    d2 = ((sub[:, None, :] - sub[None, :, :]) ** 2).sum(-1)
    med = float(np.median(d2[np.triu_indices(len(sub), 1)])) if len(sub) > 1 else 1.0
    return 1.0 / max(med, 1e-12)


def parzen_score(bank: np.ndarray, gamma: float, x: np.ndarray) -> np.ndarray:
    """``-log mean_i exp(-gamma |x - bank_i|^2)`` (>= 0), log-sum-exp stabilised."""
    d2 = np.maximum((x * x).sum(1)[:, None] - 2 * x @ bank.T + (bank * bank).sum(1), 0.0)
    a = -gamma * d2
    m = a.max(1, keepdims=True)
    return -(m[:, 0] + np.log(np.exp(a - m).mean(1)))


def kernel_terms(z: np.ndarray, seed: int = 0) -> dict:
    """``{name: scorer}`` of :data:`TERMS` fitted on model-space fit rows ``z``."""
    from metaae_edge.evaluate.detectors import fit_ocsvm, pca_latent_size
    from metaae_edge.pipeline.detector_candidates import _bank
    from metaae_edge.pipeline.detector_graphs import whitening

    mean, w = whitening(z)
    zw = (z - mean) @ w
    q = max(pca_latent_size(z, seed), 1)
    mu = z.mean(0)
    basis = np.linalg.svd(z - mu, full_matrices=False)[2][:q].T
    bank, bank_w = _bank(z, seed), _bank(zw, seed)
    g, gw = median_gamma(bank), median_gamma(bank_w)
    sub = zw if len(zw) <= 2048 else zw[np.random.default_rng(seed).choice(
        len(zw), 2048, replace=False)]
    svm = fit_ocsvm(sub, seed)

    def pca(x):
        r = x - mu
        return ((r - r @ basis @ basis.T) ** 2).mean(1)

    return {"pca-ppca": pca,
            "parzen": lambda x: parzen_score(bank, g, x),
            "parzen-white": lambda x: parzen_score(bank_w, gw, (x - mean) @ w),
            "ocsvm-white": lambda x: -svm.score_samples((x - mean) @ w)}


def unit_kernel_terms(task, seed: int = 0) -> dict[str, np.ndarray]:
    from metaae_edge.pipeline.export import split_holdout

    fit, hold = split_holdout(task, 0.2, 0)
    norm = fit.normalizer()
    z, hz, qz = (norm.transform(np.asarray(a)).astype(np.float64)
                 for a in (fit.support, hold, task.query))
    out = {"_labels": np.asarray(task.query_labels, np.int8)}
    for name, f in kernel_terms(z, seed).items():
        h = f(hz)
        out[f"{name}@sd"] = np.float64(max(float(h.std(ddof=1)) if len(h) > 1 else 0.0,
                                           1e-3))
        out[f"{name}@hold"] = h
        out[f"{name}@query"] = np.nan_to_num(f(qz), nan=1e30, posinf=1e30)
    return out


def main(argv=None) -> int:
    return run_cli(unit_kernel_terms, argv)


if __name__ == "__main__":
    sys.exit(main())
