"""Model centrality / consensus criteria for label-free detector selection (r31).

Every option scores the same unlabeled points; an option is *central* when its ranking
of them agrees with the other options' rankings (Ma, Zhao, Zhang & Akoglu 2023's review
of internal strategies; MC after Lin et al. 2020). Written from those descriptions.
"""

from __future__ import annotations

import numpy as np

#: the criteria of the r31 protocol
CRITERIA = ("kendall", "spearman", "mc")
#: MC's neighbourhood: the k most correlated other options
MC_K = 3


def correlation_matrix(scores: dict[str, np.ndarray], method: str) -> np.ndarray:
    """Pairwise Kendall tau-b (``kendall``) or Spearman rho (``spearman``) between the
    options' score vectors, in ``scores``' order; undefined (a constant score) counts 0."""
    from scipy.stats import kendalltau, spearmanr

    corr = kendalltau if method == "kendall" else spearmanr
    names = list(scores)
    m = np.eye(len(names))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = scores[names[i]], scores[names[j]]
            r = 0.0 if np.ptp(a) == 0 or np.ptp(b) == 0 else float(corr(a, b)[0])
            m[i, j] = m[j, i] = 0.0 if not np.isfinite(r) else r
    return m


def centralities(scores: dict[str, np.ndarray], criterion: str,
                 k: int = MC_K) -> dict[str, float]:
    """``{option: centrality}``: the mean correlation with every other option
    (``kendall``, ``spearman``), or with its ``k`` most correlated others (``mc``,
    Kendall)."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown centrality criterion {criterion!r}")
    m = correlation_matrix(scores, "spearman" if criterion == "spearman" else "kendall")
    names = list(scores)
    out = {}
    for i, n in enumerate(names):
        others = np.delete(m[i], i)
        if criterion == "mc":
            others = np.sort(others)[::-1][:k]
        out[n] = float(others.mean())
    return out


def pick(cent: dict[str, float], tau: float, base: str = "base") -> str:
    """The most central option other than ``base`` (ties: the earlier) if its centrality
    exceeds ``base``'s by more than ``tau``, else ``base``."""
    names = [n for n in cent if n != base]
    best = max(names, key=lambda o: (cent[o], -names.index(o)))
    return best if cent[best] - cent[base] > tau else base
