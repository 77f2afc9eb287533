"""Label-free pseudo-anomalies and per-row AUC shares for the anomaly selection of
:mod:`.candidates` (moved out of it; ``candidates.pseudo_anomalies`` still works)."""

from __future__ import annotations

import numpy as np

__all__ = ["exceed_share", "pseudo_anomalies"]


def pseudo_anomalies(hold: np.ndarray, fit: np.ndarray, seed: int = 0
                     ) -> dict[str, np.ndarray]:
    """Label-free pseudo-anomalies in model space from held-out rows ``hold`` (the fit
    rows ``fit`` give the mean and the range): ``dependency``, ``local``, ``global``."""
    rng = np.random.default_rng(seed)
    n, d = hold.shape
    m = max(4 * n, 64)
    dep = hold[rng.integers(0, n, (m, d)), np.arange(d)]
    mean = fit.mean(axis=0)
    rows = hold[rng.integers(0, n, m)]
    local = mean + np.sqrt(rng.uniform(3.0, 6.0, (m, 1))) * (rows - mean)
    lo, hi = fit.min(axis=0), fit.max(axis=0)
    pad = rng.uniform(0.1, 0.5) * (hi - lo)
    glob = rng.uniform(lo - pad, hi + pad, (m, d))
    return {"dependency": dep, "local": local, "global": glob}


def exceed_share(normal: np.ndarray, anomalous: np.ndarray) -> np.ndarray:
    """Per held-out normal row: the share of ``anomalous`` scored above it (ties: half).
    Its mean is the ROC-AUC; per row, it lets paired differences carry a standard error."""
    normal = np.nan_to_num(normal, nan=np.inf, posinf=1e300, neginf=-1e300)
    a = np.sort(np.nan_to_num(anomalous, nan=np.inf, posinf=1e300, neginf=-1e300))
    below = np.searchsorted(a, normal, side="left")
    above = len(a) - np.searchsorted(a, normal, side="right")
    return (above + 0.5 * (len(a) - above - below)) / len(a)
