#!/usr/bin/env python
"""Cache the shift-tolerant nearest-neighbour term's variants per unit (series study).

The units are those of ``scripts/cache_detector_terms.py`` (same names, same fit rows:
the support minus the 20% threshold hold-out, model space). Only units whose rows are
time-ordered get terms: declared whole series (``info["series"]``) and windows
(``info["channels"]``); the others get a file with ``_labels`` only. Per variant of
:func:`variants` (``shift:z{0,1}:w{frac}:k{k}``: z-normalised or not, the largest shift
as a fraction of the series length, the neighbour rank) the term of
:mod:`metaae_edge.pipeline.series_term` is fitted on the fit rows and stored as
``NAME@sd`` / ``NAME@hold`` / ``NAME@query`` (as the other cache), plus ``_kind``
(``series``, ``window`` or ``table``). Nothing here chooses anything.

Example::

    OMP_NUM_THREADS=1 nice -n 10 python scripts/cache_series_terms.py --out /tmp/series_terms
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cache_detector_terms import run_cli, time_ordered_unit  # noqa: E402

ZNORM = (0, 1)
W_FRACS = (0.0, 0.05, 0.1, 0.2)
KS = (1, 5)


def variants() -> list[tuple[str, bool, float, int]]:
    """``(name, znorm, w_frac, k)`` of every cached variant."""
    return [(f"shift:z{z}:w{f:g}:k{k}", bool(z), f, k)
            for z in ZNORM for f in W_FRACS for k in KS]


def unit_series_terms(task, seed: int = 0) -> dict[str, np.ndarray]:
    import torch

    from metaae_edge.pipeline.detector_candidates import _scales
    from metaae_edge.pipeline.series_term import series_term

    out, c, prepared = time_ordered_unit(task)
    if c is None:
        return out
    z, hz, qz, norm = prepared
    for name, zn, frac, k in variants():
        t = series_term(z, norm, c, zn, frac, k, seed)
        out[f"{name}@sd"] = np.float64(_scales([t], hz)[0])
        with torch.no_grad():
            for part, rows in (("hold", hz), ("query", qz)):
                s = t(torch.as_tensor(rows, dtype=torch.float32)).double().numpy()
                out[f"{name}@{part}"] = np.nan_to_num(s, nan=1e30, posinf=1e30)
    return out


def main(argv=None) -> int:
    return run_cli(unit_series_terms, argv)


if __name__ == "__main__":
    sys.exit(main())
