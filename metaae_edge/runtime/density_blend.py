"""An input-space Gaussian mixed into the bundle's generator, its weight chosen on support
folds (never on rows the bundle is evaluated on).

The generator of a bundle is ``(1 - w) p_dec + w p_in``: ``p_dec`` the latent mixture
decoded through ``decoder.onnx`` plus the residual noise model, ``p_in`` one shrunk
Gaussian over the raw inputs (fitted on values divided by the support's per-value std,
shrinkage and target by held-out likelihood, like the residual's; constant values kept
constant; the input-space Ledoit-Wolf baseline's model). ``w`` is chosen from
:data:`WEIGHTS` by the mean held-out MMD^2 over ``repeats`` x ``folds`` splits of the
support: on each split both parts are refitted on the training rows (the latent mixture
of the density's chosen shape on their codes, the residual on their residuals, the input
Gaussian on the rows), sampled, and compared with the held-out rows (standardised by the
support's std, RBF kernel of the median-heuristic bandwidth of the support); the MMD^2
of every ``w`` comes from the same kernel means in closed form. Ties go to the smaller
``w``; ``w = 0`` (no new keys) is the decoder-only generator, ``w = 1`` the input
Gaussian alone. Torch-free (numpy).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .density import MAX_FULL_RESIDUAL, TARGETS, Density, _fit_gmm, pooled_residual
from .density_temperature import _sqdist

__all__ = ["WEIGHTS", "choose_input_weight", "fit_input_gaussian"]

#: candidate weights of the input-space Gaussian
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def fit_input_gaussian(rows: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, chol)`` in raw units of one shrunk Gaussian over ``rows`` (n, D): fitted on
    the non-constant values divided by their std (both shrinkage targets), then scaled
    back; a value constant over ``rows`` keeps it (std 1e-6 of the largest std), so
    neither target spreads variance onto it (digits' border pixels)."""
    x = np.asarray(rows, np.float64).reshape(len(rows), -1)
    sd = x.std(0)
    live = sd > 1e-9 * max(float(sd.max()), 1e-30)
    mean, chol = x.mean(0), np.diag(np.full(x.shape[1], 1e-6 * max(float(sd.max()), 1e-30)))
    if live.any():
        m, c, _ = pooled_residual(x[:, live] / sd[live], seed=seed, targets=TARGETS)
        mean[live] = m * sd[live]
        chol[np.ix_(live, live)] = c * sd[live][:, None]  # order kept: still lower
    return mean.astype(np.float32), chol.astype(np.float32)


def _kmean(a: np.ndarray, b: np.ndarray, s: float, same: bool = False) -> float:
    k = np.exp(-_sqdist(a, b) / (2 * s * s))
    if same:  # unbiased: without the diagonal
        return float((k.sum() - np.trace(k)) / (len(a) * (len(a) - 1)))
    return float(k.mean())


def _fold_mmd(dec: np.ndarray, inp: np.ndarray, held: np.ndarray, s: float
              ) -> dict[float, float]:
    """MMD^2 (without the held-out rows' own term, equal for every w) of each mixture."""
    aa, bb, ab = _kmean(dec, dec, s, True), _kmean(inp, inp, s, True), _kmean(dec, inp, s)
    ay, by = _kmean(dec, held, s), _kmean(inp, held, s)
    return {w: (1 - w) ** 2 * aa + w * w * bb + 2 * w * (1 - w) * ab
            - 2 * (1 - w) * ay - 2 * w * by for w in WEIGHTS}


def choose_input_weight(support: np.ndarray, codes: np.ndarray, resid: np.ndarray,
                        density: Density, decode: Callable[[np.ndarray], np.ndarray], *,
                        seed: int = 0, folds: int = 4, repeats: int = 2,
                        n_samples: int = 512) -> tuple[float, dict[str, float]]:
    """``(w, mean held-out MMD^2 per w)``; ``support`` raw rows (n, ...), ``codes`` their
    latent codes, ``resid`` their reconstruction residuals (raw units), ``decode`` maps
    (m, *latent_shape) codes to raw rows. Inputs of more than ``MAX_FULL_RESIDUAL`` values
    per sample, or fewer than 16 rows: ``(0.0, {})`` (not offered)."""
    x = np.asarray(support, np.float64).reshape(len(support), -1)
    z = np.asarray(codes, np.float64).reshape(len(codes), -1)
    r = np.asarray(resid, np.float64).reshape(len(resid), -1)
    if x.shape[1] > MAX_FULL_RESIDUAL or len(x) < 16:
        return 0.0, {}
    sd = x.std(0)
    sd = np.where(sd > 1e-12 * max(float(sd.max()), 1e-30), sd, 1.0)
    xs = (x - x.mean(0)) / sd
    bw = float(np.median(np.sqrt(_sqdist(xs, xs))[np.triu_indices(len(xs), 1)])) or 1.0
    info = density.info
    k, a, t = info["components"], info["shrinkage"], info.get("shrinkage_target", "diag")
    scores: dict[float, list[float]] = {w: [] for w in WEIGHTS}
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        idx = rng.permutation(len(x))
        for part in np.array_split(idx, folds):
            train = np.setdiff1d(idx, part)
            w_, m_, c_ = _fit_gmm(z[train], k, a, seed, target=t)
            fold = Density(w_, m_, c_, density.latent_shape, temperature=density.temperature)
            zs = fold.sample(n_samples, seed=int(rng.integers(2**31)))
            rm, rc, _ = pooled_residual(r[train] / sd, seed=seed, targets=TARGETS)
            eps = rng.standard_normal((n_samples, x.shape[1]))
            noise = rm + (eps * rc if rc.ndim == 1 else eps @ rc.T)
            dec = np.asarray(decode(zs), np.float64).reshape(n_samples, -1)
            dec = (dec - x.mean(0)) / sd + noise
            im, ic = fit_input_gaussian(x[train], seed)
            inp = (im + rng.standard_normal((n_samples, x.shape[1])) @ ic.T.astype(
                np.float64) - x.mean(0)) / sd
            for w, v in _fold_mmd(dec, inp, xs[part], bw).items():
                scores[w].append(v)
    mean = {w: float(np.mean(v)) for w, v in scores.items()}
    best = min(WEIGHTS, key=lambda w: (round(mean[w], 12), w))
    return best, {f"{w:g}": round(v, 6) for w, v in mean.items()}
