#!/usr/bin/env python
"""Cache the MiniRocket feature term's variants per unit (r27 rocket study).

The units are those of ``scripts/cache_detector_terms.py`` (same names, same fit rows:
the support minus the 20% threshold hold-out, model space). Only units whose rows are
time-ordered get terms: declared whole series (``info["series"]``) and windows
(``info["channels"]``); the others get a file with ``_labels`` only. Per variant of
:func:`variants` (``rocket:z{0,1}:d{0,1}:ppv:{maha,knn}``: z-normalised per row or not,
first-difference channels or not, smooth-PPV pooling, Mahalanobis or 1-NN score) the
term of :mod:`metaae_edge.pipeline.rocket_term` is fitted on the fit rows and stored as
``NAME@sd`` / ``NAME@hold`` / ``NAME@query`` (as the other caches), plus ``_kind``
(``series``, ``window`` or ``table``). The two scores of one (z, d) share its features.
Nothing here chooses anything.

Example::

    OMP_NUM_THREADS=1 nice -n 10 python scripts/cache_rocket_terms.py --out /tmp/rocket_terms
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cache_detector_terms import run_cli, time_ordered_unit  # noqa: E402

ZNORM = (0, 1)
DIFF = (0, 1)
SCORES = ("maha", "knn")


def variants() -> list[tuple[str, bool, bool, str]]:
    """``(name, znorm, diff, score)`` of every cached variant."""
    return [(f"rocket:z{z}:d{d}:ppv:{s}", bool(z), bool(d), s)
            for z in ZNORM for d in DIFF for s in SCORES]


def _scores(term, rows: np.ndarray, chunk: int = 256) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for a in range(0, len(rows), chunk):
            x = torch.as_tensor(rows[a:a + chunk], dtype=torch.float32)
            out.append(term(x).double().numpy())
    return np.nan_to_num(np.concatenate(out), nan=1e30, posinf=1e30)


def unit_rocket_terms(task, seed: int = 0) -> dict[str, np.ndarray]:
    from metaae_edge.pipeline.detector_candidates import _scales
    from metaae_edge.pipeline.rocket_term import fit_rocket, rocket_score_term

    out, c, prepared = time_ordered_unit(task)
    if c is None:
        return out
    z, hz, qz, norm = prepared
    fitted: dict = {}
    for name, zn, df, score in variants():
        if (zn, df) not in fitted:
            fitted[zn, df] = fit_rocket(z, norm, c, zn, df, seed)
        t = rocket_score_term(fitted[zn, df], score, z.shape[1] // c, seed)
        out[f"{name}@sd"] = np.float64(_scales([t], hz)[0])
        out[f"{name}@hold"] = _scores(t, hz)
        out[f"{name}@query"] = _scores(t, qz)
    return out


def main(argv=None) -> int:
    return run_cli(unit_rocket_terms, argv)


if __name__ == "__main__":
    sys.exit(main())
