"""The latent sampling temperature chosen on a split of the support codes (never on rows
the bundle is evaluated on): for each of ``folds`` folds, the mixture of the density's
chosen shape (components, shrinkage, target) is refitted on the other folds' codes,
sampled at each temperature of ``grid``, and compared with the fold's held-out codes by
the unbiased MMD^2 (RBF, median-heuristic bandwidth of all the codes); the temperature of
the lowest mean MMD^2 wins (ties: the one nearest 1). Torch-free (numpy)."""

from __future__ import annotations

import numpy as np

from .density import Density, _fit_gmm

__all__ = ["MAX_CODES", "TEMPERATURES", "choose_temperature"]

#: the grid; on the train-split tasks of the five vector families (10 each,
#: scripts/generation_design.py) the choice changed no family's MMD^2 for the worse
TEMPERATURES = (0.9, 1.0, 1.1)
#: codes the choice looks at (seeded subsample above it)
MAX_CODES = 1024


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def _mmd2(x: np.ndarray, y: np.ndarray, s: float) -> float:
    def k(a, b):
        return np.exp(-_sqdist(a, b) / (2 * s * s))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def choose_temperature(codes: np.ndarray, density: Density, *, seed: int = 0,
                       folds: int = 4, grid: tuple[float, ...] = TEMPERATURES,
                       n_samples: int = 512) -> tuple[float, dict[str, float]]:
    """``(temperature, mean held-out MMD^2 per temperature)`` for ``density`` fitted on
    ``codes`` (n, ...)."""
    x = np.asarray(codes, np.float64).reshape(len(codes), -1)
    if len(x) > MAX_CODES:  # the kernels are n x n: a seeded subsample of the codes
        x = x[np.random.default_rng(seed).choice(len(x), MAX_CODES, replace=False)]
    info = density.info
    k, a, t = info["components"], info["shrinkage"], info.get("shrinkage_target", "diag")
    bw = float(np.median(np.sqrt(_sqdist(x, x))[np.triu_indices(len(x), 1)])) or 1.0
    idx = np.random.default_rng(seed).permutation(len(x))
    scores = {g: [] for g in grid}
    for i, part in enumerate(np.array_split(idx, max(2, min(folds, len(x) // 4)))):
        train = np.setdiff1d(idx, part)
        w, m, c = _fit_gmm(x[train], k, a, seed, target=t)
        fold = Density(w, m, c, (x.shape[1],))
        for g in grid:  # one seed per fold: the temperatures are compared on the same draws
            scores[g].append(_mmd2(fold.sample(n_samples, seed=seed + i, temperature=g)
                                   .astype(np.float64), x[part], bw))
    mean = {g: float(np.mean(v)) for g, v in scores.items()}
    best = min(grid, key=lambda g: (round(mean[g], 12), abs(g - 1.0)))
    return best, {f"{g:g}": round(v, 6) for g, v in mean.items()}
