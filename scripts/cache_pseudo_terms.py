#!/usr/bin/env python
"""Cache each term's scores on the label-free pseudo-anomalies of the product's anomaly
criterion, per unit (r28 selection study).

The units are those of ``scripts/cache_detector_terms.py`` (same names, same fit rows:
the support minus the 20% threshold hold-out, model space). The pseudo-anomalies are
``pseudo_anomalies(hold, fit, 0)`` (``dependency``, ``local``, ``global``), exactly what
``candidates.select`` scores the candidates on. Per term of :data:`BASE` (the shipped
``ensemble+ours``'s terms, the window and rocket ones on rows declared so) and
:data:`OPTIONS`, fitted as the other caches fit it: ``NAME@sd``, ``NAME@hold`` and
``NAME@pseudo:KIND``, plus ``_kind``. No query row and no label is read or stored.

Example::

    OMP_NUM_THREADS=1 nice -n 10 python scripts/cache_pseudo_terms.py --out /tmp/pseudo_terms
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cache_detector_terms import _IForestTerm, run_cli  # noqa: E402
from cache_kernel_terms import kernel_terms  # noqa: E402

BASE = ("knn-white", "mahalanobis", "pca", "ours")
OPTIONS = ("ocsvm", "knn", "gmm", "iforest", "pca-ppca", "parzen-white")


def _np(term):
    import torch

    def f(x):
        with torch.no_grad():
            return term(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    return f


def unit_pseudo_terms(task, ckpt, seed: int = 0) -> dict[str, np.ndarray]:
    from metaae_edge.adapt import adapt
    from metaae_edge.pipeline.detector_candidates import ROCKET, _term
    from metaae_edge.pipeline.export import split_holdout
    from metaae_edge.pipeline.pseudo_anomalies import pseudo_anomalies
    from metaae_edge.pipeline.rocket_term import rocket_term
    from metaae_edge.pipeline.window_features import check_channels, fit_front

    fit, hold = split_holdout(task, 0.2, 0)
    norm = fit.normalizer()
    z, hz = (norm.transform(np.asarray(a)).astype(np.float64) for a in (fit.support, hold))
    pseudo = pseudo_anomalies(hz, z, 0)
    ch, ser = task.info.get("channels"), task.info.get("series")
    out = {"_kind": np.array("series" if ser else "window" if ch else "table")}
    front = fit_front(z, norm, check_channels(ch, z.shape[1])) if ch is not None else None
    ours = adapt(ckpt, fit, finetune_steps=30)
    terms = {n: _np(_term(n, z, seed, ours, front)) for n in BASE + OPTIONS[:3]}
    terms["iforest"] = _np(_IForestTerm(z, seed))
    kern = kernel_terms(z, seed)
    terms.update({n: kern[n] for n in ("pca-ppca", "parzen-white")})
    if front is not None:
        terms["spec:mahalanobis"] = _np(_term("spec:mahalanobis", z, seed, None, front))
    if ser or ch:
        terms["rocket"] = _np(rocket_term(z, norm, int(ser or ch), *ROCKET, seed))
    for name, f in terms.items():
        h = f(hz)
        out[f"{name}@sd"] = np.float64(max(float(h.std(ddof=1)), 1e-3))
        out[f"{name}@hold"] = h
        for kind, x in pseudo.items():
            out[f"{name}@pseudo:{kind}"] = np.nan_to_num(f(x), nan=1e30, posinf=1e30)
    return out


def main(argv=None) -> int:
    return run_cli(unit_pseudo_terms, argv, with_checkpoint=True)


if __name__ == "__main__":
    sys.exit(main())
