#!/usr/bin/env python
"""Cache each option's Excess-Mass / Mass-Volume areas per unit (r30 selection study).

The units are those of ``scripts/cache_detector_terms.py`` (same names, same fit rows:
the support minus the 20% threshold hold-out, model space). Per unit, Goix's feature
sub-sampling (:func:`emmv.feature_draws`: :data:`N_DRAWS` subsets of
:data:`MAX_FEATURES` columns): on each subset every option of :data:`OPTIONS` is refitted
on the fit rows' columns, and scored on the held-out normal rows and on :data:`N_UNIF`
uniform samples over the bounding box of the support (fit and held-out rows) on those
columns (the IsolationForest with :data:`IFOREST_TREES` trees). ``base`` is the z-score
sum (held-out mean and std, as every ensemble term) of the shipped rule's raw-block terms
:data:`BASE_PARTS`; ``ours``, the window-feature and rocket terms need the whole row and
are not refitted on a subset. Stored: ``OPT@em`` and ``OPT@mv`` (one area per draw,
:mod:`emmv`), plus ``_kind``. No query row or label is
read or stored.

Example::

    OMP_NUM_THREADS=1 nice -n 10 python scripts/cache_emmv_terms.py --out /tmp/emmv_terms
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import emmv  # noqa: E402
from cache_detector_terms import _IForestTerm, run_cli  # noqa: E402
from cache_kernel_terms import kernel_terms  # noqa: E402
from cache_pseudo_terms import _np  # noqa: E402

BASE_PARTS = ("knn-white", "mahalanobis", "pca")
OPTIONS = ("ocsvm", "knn", "gmm", "iforest", "pca-ppca", "parzen-white")
N_DRAWS = 5
MAX_FEATURES = 3
N_UNIF = 5000
#: trees of the sub-sampled IsolationForest (the cached query term has 200; cost)
IFOREST_TREES = 50
#: ``--crossfit`` (secondary, after the main result): folds of the whole support
CROSSFIT_FOLDS = 3


def subset_scorers(z: np.ndarray, seed: int) -> dict:
    """``{name: scorer}`` of :data:`BASE_PARTS` and :data:`OPTIONS` fitted on ``z``."""
    from metaae_edge.pipeline.detector_candidates import _term

    out = {n: _np(_term(n, z, seed)) for n in BASE_PARTS + OPTIONS[:3]}
    out["iforest"] = _np(_IForestTerm(z, seed, IFOREST_TREES))
    kern = kernel_terms(z, seed)
    out.update({n: kern[n] for n in ("pca-ppca", "parzen-white")})
    return out


def fold_scores(z: np.ndarray, hz: np.ndarray, unif: np.ndarray, seed: int) -> dict:
    """``{option: (held-out scores, uniform scores)}`` of the options fitted on ``z``;
    ``base`` is the z-score sum of :data:`BASE_PARTS` (``hz``'s mean and std)."""
    scores = {n: (f(hz), f(unif)) for n, f in subset_scorers(z, seed).items()}
    base_h, base_u = 0.0, 0.0
    for n in BASE_PARTS:
        h, u = scores.pop(n)
        mu, sd = h.mean(), max(float(h.std(ddof=1)), 1e-3)
        base_h, base_u = base_h + (h - mu) / sd, base_u + (u - mu) / sd
    return {"base": (base_h, base_u), **scores}


def draw_areas(splits: list, box_rows: np.ndarray, seed: int) -> dict[str, tuple]:
    """``{option: (em area, mv area)}`` on one feature subset: the held-out and uniform
    scores of every ``(fit rows, held-out rows)`` split pooled (one split: the protocol;
    several: cross-fitting, the volume is then the mean over the split models)."""
    unif = emmv.uniform_box(box_rows, N_UNIF, seed)
    pooled: dict[str, list] = {}
    for z, hz in splits:
        for n, hu in fold_scores(z, hz, unif, seed).items():
            pooled.setdefault(n, []).append(hu)
    out = {}
    for n, parts in pooled.items():
        h, u = (np.nan_to_num(np.concatenate(a), nan=1e30, posinf=1e30)
                for a in zip(*parts))
        out[n] = (emmv.em_area(h, u), emmv.mv_area(h, u))
    return out


def fold_parts(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """The cross-fitting folds: a ``default_rng(seed)`` permutation of ``range(n)`` cut
    into ``folds`` near-equal parts (shared with ``cache_centrality_terms.py``)."""
    return np.array_split(np.random.default_rng(seed).permutation(n), folds)


def _unit(task, seed: int, folds: int) -> dict[str, np.ndarray]:
    from metaae_edge.pipeline.export import split_holdout

    fit, hold = split_holdout(task, 0.2, 0)
    norm = fit.normalizer()
    z, hz = (norm.transform(np.asarray(a)).astype(np.float64) for a in (fit.support, hold))
    ch, ser = task.info.get("channels"), task.info.get("series")
    out = {"_kind": np.array("series" if ser else "window" if ch else "table")}
    rows = np.vstack([z, hz])
    if folds:  # cross-fitting over the whole support (the secondary configuration)
        parts = fold_parts(len(rows), folds, seed)
        splits = [(np.delete(rows, p, 0), rows[p]) for p in parts]
    else:
        splits = [(z, hz)]
    areas: dict[str, list] = {}
    for i, cols in enumerate(emmv.feature_draws(z.shape[1], N_DRAWS, MAX_FEATURES, seed)):
        cut = [(a[:, cols], b[:, cols]) for a, b in splits]
        for n, a in draw_areas(cut, rows[:, cols], seed + i).items():
            areas.setdefault(n, []).append(a)
    for n, a in areas.items():
        out[f"{n}@em"], out[f"{n}@mv"] = np.array(a).T
    return out


def unit_emmv_terms(task, seed: int = 0) -> dict[str, np.ndarray]:
    """The protocol: fit rows and the 20% threshold hold-out of the product."""
    return _unit(task, seed, 0)


def unit_emmv_crossfit(task, seed: int = 0) -> dict[str, np.ndarray]:
    """The secondary configuration: :data:`CROSSFIT_FOLDS` folds of the whole support."""
    return _unit(task, seed, CROSSFIT_FOLDS)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--crossfit" in argv:  # the secondary configuration (docs/real_data.md, r30)
        argv.remove("--crossfit")
        return run_cli(unit_emmv_crossfit, argv)
    return run_cli(unit_emmv_terms, argv)


if __name__ == "__main__":
    sys.exit(main())
