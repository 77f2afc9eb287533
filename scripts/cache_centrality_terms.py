#!/usr/bin/env python
"""Cache every option's out-of-fold scores of the support rows per unit (r31 centrality
study, docs/real_data.md).

The units are those of ``scripts/cache_detector_terms.py`` (same names). Per unit the
whole support (fit rows and the 20% hold-out) is cut into :data:`FOLDS` seeded folds
(``cache_emmv_terms.fold_parts``); for each fold every term is fitted on the other folds
exactly as the query caches fit it on the fit rows (that task's normaliser and model
space, ``cache_detector_terms.fitted_terms``; the rocket term ``ROCKET``; the kernel terms
``cache_kernel_terms.kernel_terms``) and scores the held-out fold. Each term's fold scores
are z-scored by that fold's mean and std (floored at 1e-3, as ``_scales``); ``base`` is the
weighted sum of the shipped rule's z-scored terms (``study_pseudo_select.base_parts``).
Stored: ``OPTION@oof`` for ``base`` and :data:`OPTIONS` and ``TERM@oof`` for base's terms
(support order: ``_order``), plus ``_kind``. No query row or label is read or stored.

Example::

    OMP_NUM_THREADS=1 nice -n 10 python scripts/cache_centrality_terms.py --out /tmp/centrality
"""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cache_detector_terms import fitted_terms, run_cli, term_scores  # noqa: E402
from cache_emmv_terms import fold_parts  # noqa: E402
from cache_kernel_terms import kernel_terms  # noqa: E402
from cache_rocket_terms import _scores, variants  # noqa: E402
from study_kernel_terms import ROCKET  # noqa: E402
from study_pseudo_select import OPTIONS, base_parts  # noqa: E402

FOLDS = 3
DETECTOR = ("knn-white", "mahalanobis", "pca", "ours", "spec:mahalanobis",
            "ocsvm", "knn", "gmm", "iforest")
KERNEL = ("pca-ppca", "parzen-white")


def unit_kind(task) -> str:
    return ("series" if task.info.get("series") else
            "window" if task.info.get("channels") else "table")


def fold_term_scores(fit, rows: np.ndarray, ckpt, seed: int) -> dict[str, np.ndarray]:
    """``{term: z-scored scores of raw ``rows``}`` of every term the options need,
    fitted on ``fit`` (a task whose support is the other folds)."""
    from metaae_edge.pipeline.rocket_term import fit_rocket, rocket_score_term

    norm, z, terms = fitted_terms(fit, ckpt, seed, DETECTOR)
    hz = norm.transform(np.asarray(rows)).astype(np.float64)
    raw = {n: term_scores(t, hz) for n, t in terms.items()}
    raw.update({n: np.nan_to_num(f(hz), nan=1e30, posinf=1e30)
                for n, f in kernel_terms(z, seed).items() if n in KERNEL})
    c = fit.info.get("series") or fit.info.get("channels")
    if c is not None:
        _, zn, df, score = next(v for v in variants() if v[0] == ROCKET[0])
        rt = rocket_score_term(fit_rocket(z, norm, int(c), zn, df, seed), score,
                               z.shape[1] // int(c), seed)
        raw["rocket"] = _scores(rt, hz)
    return {n: (s - s.mean()) / max(float(s.std(ddof=1)), 1e-3) for n, s in raw.items()}


def unit_centrality_terms(task, ckpt, seed: int = 0) -> dict[str, np.ndarray]:
    """Out-of-fold z-scores of every option (and of base's terms) on the support."""
    support = np.asarray(task.support)
    parts = fold_parts(len(support), FOLDS, 0)
    kind = unit_kind(task)
    pooled: dict[str, list] = {}
    for p in parts:
        fit = dataclasses.replace(task, support=np.delete(support, p, 0),
                                  info=dict(task.info))
        for n, s in fold_term_scores(fit, support[p], ckpt, seed).items():
            pooled.setdefault(n, []).append(s)
    oof = {n: np.concatenate(v) for n, v in pooled.items()}
    w = {t: v for t, v in base_parts(kind).items() if t in oof}
    out = {"_kind": np.array(kind), "_order": np.concatenate(parts)}
    out["base@oof"] = sum(v * oof[t] for t, v in w.items())
    out.update({f"{o}@oof": oof[o] for o in OPTIONS})
    out.update({f"{t}@oof": oof[t] for t in w})
    return out


def main(argv=None) -> int:
    return run_cli(unit_centrality_terms, argv, with_checkpoint=True)


if __name__ == "__main__":
    sys.exit(main())
