"""Anomaly thresholds from held-out normal data (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["fit_threshold"]


def fit_threshold(scores: np.ndarray, fpr: float = 0.01) -> dict[str, Any]:
    """Threshold at the ``1 - fpr`` quantile of scores of held-out *normal* samples.

    With ``n`` held-out samples the smallest meaningful rate is ``1/n``; a smaller target
    is clipped to it (and the manifest says so through ``n_holdout``).

    Returns:
        ``{"value", "fpr", "method", "n_holdout", "score_mean", "score_std",
        "holdout_fpr"}``; ``holdout_fpr`` is the rate actually reached on the held-out set.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise DataError("no held-out normal samples to calibrate the anomaly threshold on")
    if not np.all(np.isfinite(s)):
        raise DataError("anomaly scores contain NaN/Inf; the model or data is broken")
    if not 0 < fpr < 1:
        raise DataError(f"--fpr must be in (0, 1), got {fpr}")
    q = 1.0 - max(fpr, 1.0 / s.size)
    value = float(np.quantile(s, q, method="higher"))
    return {
        "value": value,
        "fpr": float(fpr),
        "method": f"quantile {q:.4f} of held-out normal scores",
        "n_holdout": int(s.size),
        "score_mean": float(s.mean()),
        "score_std": float(s.std()),
        "holdout_fpr": float(np.mean(s > value)),
    }
