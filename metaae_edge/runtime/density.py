"""A latent density for generation: a small Gaussian mixture over flattened latent codes.

Torch-free (numpy only), so the same code fits the density at export time and samples it
on a device. :func:`fit_density` fits mixtures of 1..``max_components`` full-covariance
Gaussians, each covariance shrunk towards its diagonal (``(1 - a) S + a diag(S)``, needed
when a few dozen support rows meet a latent of tens or hundreds of values), and keeps the
(components, shrinkage) pair with the best held-out log-likelihood over a K-fold split of
the codes it is given; the winner is refitted on all of them (latents of more than
``MAX_MIXTURE_DIM`` values: one component, only the shrinkage is chosen). One component with
shrinkage is the Gaussian; spatial (conv) latents are flattened, so the Gaussian over the
flattened latent with shrinkage is one of the candidates.

The density is stored as ``density.npz`` (``weights`` (K,), ``means`` (K, d), ``chols``
(K, d, d) lower Cholesky factors of the covariances, ``latent_shape`` (r,)), read back
with ``allow_pickle=False`` and validated by :meth:`Density.load`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleError, DataError

__all__ = ["DENSITY_FILE", "DENSITY_ROLE", "Density", "fit_density", "fit_residual",
           "pooled_residual"]

DENSITY_FILE = "density.npz"
MAX_FULL_RESIDUAL = 256
MAX_MIXTURE_DIM = 256
#: the (components, shrinkage) choice is cross-validated on at most this many seeded codes
#: (the final fit uses them all): the grid on 16,000 codes took 31 s of a 20,000-row
#: adapt-and-export whose target is 30 s in all
MAX_SELECT_CODES = 4096
DENSITY_ROLE = "density"
SHRINKAGE = (0.01, 0.1, 0.3, 0.6, 0.9)
#: shrinkage targets: the diagonal, and (session 27) the scaled identity of Ledoit-Wolf
TARGETS = ("diag", "iso")
_LOG2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Density:
    """A Gaussian mixture over flattened latent codes of shape ``latent_shape``."""

    weights: np.ndarray
    means: np.ndarray
    chols: np.ndarray
    latent_shape: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict, compare=False)
    #: the decoder's noise model p(x | z) = N(decode(z) + residual_mean, R): the support's
    #: reconstruction residual (raw units, flattened), R = residual_chol residual_chol^T
    #: (a Gaussian fitted like the latent's, shrinkage by held-out likelihood; diagonal
    #: beyond MAX_FULL_RESIDUAL values, where residual_chol holds the stds (d,))
    residual_mean: np.ndarray | None = field(default=None, compare=False)
    residual_chol: np.ndarray | None = field(default=None, compare=False)
    #: optional (newer bundles): one residual Gaussian per latent component, (K, d) means
    #: and (K, d, d) Cholesky factors ((K, d) stds when diagonal), fitted on the support
    #: rows by their responsibilities and shrunk towards the pooled residual above
    #: (:mod:`.density_residual`); a sample's noise is its latent component's
    residual_means: np.ndarray | None = field(default=None, compare=False)
    residual_chols: np.ndarray | None = field(default=None, compare=False)
    #: optional (newer bundles): the latent temperature chosen on support folds
    #: (:mod:`.density_temperature`); a caller's temperature multiplies it; 1.0 if absent
    temperature: float = field(default=1.0, compare=False)
    #: optional (session 28): an input-space Gaussian mixed in with weight
    #: ``input_weight`` (raw units, flattened: mean (D,), lower Cholesky factor (D, D)),
    #: the weight chosen on support folds (:mod:`.density_blend`); 0 if absent
    input_weight: float = field(default=0.0, compare=False)
    input_mean: np.ndarray | None = field(default=None, compare=False)
    input_chol: np.ndarray | None = field(default=None, compare=False)
    #: optional (session 30): a raw-unit shift (D,) added to every generated row, the
    #: empirical-Bayes move of the support mean towards the family's location prior
    #: (:mod:`.density_location`); absent: no shift
    location_shift: np.ndarray | None = field(default=None, compare=False)

    def input_draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` flattened draws of the input-space Gaussian (raw units)."""
        eps = rng.standard_normal((n, len(self.input_mean)))
        return self.input_mean + eps @ self.input_chol.T

    def residual_noise(self, n: int, rng: np.random.Generator,
                       comp: np.ndarray | None = None) -> np.ndarray | None:
        """``n`` flattened draws of the residual noise model (None: the bundle has none);
        ``comp``: each draw's latent component (used when the bundle stores per-component
        residuals)."""
        if self.residual_chol is None:
            return None
        eps = rng.standard_normal((n, len(self.residual_mean)))
        if self.residual_chols is None or comp is None:
            c = self.residual_chol
            return self.residual_mean + (eps * c if c.ndim == 1 else eps @ c.T)
        out = np.empty_like(eps)
        for k in range(self.components):  # per component: never (n, d, d) in memory
            rows = comp == k
            c = self.residual_chols[k]
            out[rows] = self.residual_means[k] + (eps[rows] * c if c.ndim == 1
                                                  else eps[rows] @ c.T)
        return out

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def components(self) -> int:
        return int(len(self.weights))

    def sample(self, n: int, seed: int | None = None, temperature: float = 1.0
               ) -> np.ndarray:
        """``n`` latent codes (n, *latent_shape) float32, reproducible by ``seed``;
        ``temperature`` scales the spread around each component's mean."""
        return self.draw(n, seed, temperature)[0]

    def draw(self, n: int, seed: int | None = None, temperature: float = 1.0
             ) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, components)``: :meth:`sample`'s codes and each one's component."""
        rng = np.random.default_rng(seed)
        comp = rng.choice(self.components, size=n, p=self.weights)
        eps = rng.standard_normal((n, self.dim))
        t = temperature * self.temperature
        z = self.means[comp] + t * np.einsum("nij,nj->ni", self.chols[comp], eps)
        return z.reshape(n, *self.latent_shape).astype(np.float32), comp

    def log_prob(self, z: np.ndarray) -> np.ndarray:
        """Per-row log density of codes ``z`` (n, ...) (flattened)."""
        return _log_prob(np.asarray(z, np.float64).reshape(len(z), -1), self.weights,
                         self.means, self.chols)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        extra = {} if self.residual_chol is None else {
            "residual_mean": self.residual_mean, "residual_chol": self.residual_chol}
        if self.residual_chols is not None:  # new optional keys: old readers ignore them
            extra.update(residual_means=self.residual_means,
                         residual_chols=self.residual_chols)
        if self.temperature != 1.0:
            extra["temperature"] = np.asarray(self.temperature, np.float64)
        if self.input_weight > 0:
            extra.update(input_weight=np.asarray(self.input_weight, np.float64),
                         input_mean=self.input_mean, input_chol=self.input_chol)
        if self.location_shift is not None:
            extra["location_shift"] = np.asarray(self.location_shift, np.float32)
        np.savez(buf, weights=self.weights, means=self.means, chols=self.chols,
                 latent_shape=np.asarray(self.latent_shape, np.int64), **extra)
        return buf.getvalue()

    @classmethod
    def load(cls, path: Path, latent_shape: tuple[int, ...] | None = None) -> Density:
        """Read ``density.npz``; ``latent_shape`` (if given) must match the stored one.

        Raises:
            BundleError: unreadable, or arrays of the wrong shape / non-finite values /
                weights that are not a distribution / factors that are not Cholesky.
        """
        try:
            with np.load(path, allow_pickle=False) as f:
                w, m, c, shape = (np.asarray(f[k], np.float64) if k != "latent_shape"
                                  else np.asarray(f[k]) for k in
                                  ("weights", "means", "chols", "latent_shape"))
                rm, rc, rms, rcs = (np.asarray(f[k], np.float32) if k in f.files else None
                                    for k in ("residual_mean", "residual_chol",
                                              "residual_means", "residual_chols"))
                temp = np.asarray(f["temperature"], np.float64) if "temperature" in f.files \
                    else np.asarray(1.0)
                blend = tuple(np.asarray(f[k], np.float64) if k in f.files else None
                              for k in ("input_weight", "input_mean", "input_chol"))
                shift = np.asarray(f["location_shift"], np.float32) \
                    if "location_shift" in f.files else None
        except (OSError, KeyError, ValueError) as exc:
            raise BundleError(f"{path}: not a readable latent density ({exc})") from None
        shape = tuple(int(v) for v in shape.reshape(-1))
        why = _invalid(w, m, c, shape, latent_shape) or _invalid_residual(rm, rc, rms, rcs,
                                                                          len(w))
        if why is None and not (temp.shape == () and np.isfinite(temp) and 0 < temp <= 10):
            why = f"temperature {temp!r} is not a number in (0, 10]"
        why = why or _invalid_blend(*blend)
        if why is None and shift is not None and not (shift.ndim == 1 and
                                                      np.all(np.isfinite(shift))):
            why = "location_shift is not a finite vector"
        if why:
            raise BundleError(f"{path}: invalid latent density: {why}")
        iw, im, ic = blend
        return cls(w, m, c, shape, residual_mean=rm, residual_chol=rc, residual_means=rms,
                   residual_chols=rcs, temperature=float(temp),
                   input_weight=0.0 if iw is None else float(iw), input_mean=im,
                   input_chol=ic, location_shift=shift)


def _invalid_blend(iw, im, ic) -> str | None:
    """Why the input-space component's arrays are invalid (None: valid, or absent)."""
    if iw is None and im is None and ic is None:
        return None
    if iw is None or im is None or ic is None or iw.shape != () or not 0 < iw <= 1 \
            or im.ndim != 1 or ic.shape != (len(im), len(im)):
        return "input_weight / input_mean / input_chol do not fit each other"
    if not (np.all(np.isfinite(im)) and np.all(np.isfinite(ic))) \
            or np.any(np.diagonal(ic) <= 0) or np.any(np.triu(ic, 1) != 0):
        return "input_chol is not a finite lower Cholesky factor"
    return None


def _invalid_residual(rm, rc, rms, rcs, k: int) -> str | None:
    """Why the residual arrays do not fit each other (None: they do, or are absent)."""
    finite = all(a is None or np.all(np.isfinite(a)) for a in (rm, rc, rms, rcs))
    if (rm is None) != (rc is None) or rm is not None and not (
            rm.ndim == 1 and rc.shape in ((len(rm),), (len(rm), len(rm))) and finite):
        return "residual_mean / residual_chol do not match"
    if (rms is None) != (rcs is None) or rms is not None and (
            rm is None or rms.shape != (k, len(rm)) or rcs.shape != (k, *rc.shape)
            or not finite):
        return "residual_means / residual_chols do not match the components and residual"
    return None


def _invalid(w, m, c, shape, expected) -> str | None:
    k = len(w)
    d = math.prod(shape) if shape else 0
    if w.ndim != 1 or k < 1 or m.shape != (k, d) or c.shape != (k, d, d) or d < 1:
        return f"arrays weights {w.shape}, means {m.shape}, chols {c.shape} do not fit " \
               f"latent shape {shape}"
    if expected is not None and tuple(expected) != shape:
        return f"latent shape {shape}, but the decoder takes {tuple(expected)}"
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(m)) and np.all(np.isfinite(c))):
        return "NaN/Inf values"
    if np.any(w < 0) or abs(w.sum() - 1) > 1e-6:
        return "weights are not a probability distribution"
    diag = np.diagonal(c, axis1=1, axis2=2)
    if np.any(diag <= 0) or np.any(np.triu(c, 1) != 0):
        return "chols are not lower Cholesky factors"
    return None


def _log_prob(x: np.ndarray, w: np.ndarray, m: np.ndarray, chols: np.ndarray) -> np.ndarray:
    d = x.shape[1]
    parts = []
    for k in range(len(w)):
        inv = np.linalg.inv(chols[k])
        r = (x - m[k]) @ inv.T
        logdet = 2 * np.log(np.diagonal(chols[k])).sum()
        parts.append(math.log(max(w[k], 1e-300)) - 0.5 * (d * _LOG2PI + logdet
                                                           + (r * r).sum(1)))
    a = np.stack(parts, 1)
    top = a.max(1, keepdims=True)
    return (top + np.log(np.exp(a - top).sum(1, keepdims=True)))[:, 0]


def _covariance(x: np.ndarray, r: np.ndarray, mean: np.ndarray, shrink: float,
                floor: float, target: str = "diag") -> np.ndarray:
    """Shrunk weighted covariance: (1 - a) S + a T, T = diag(S) (``target`` "diag") or
    the scaled identity mean(diag(S)) I ("iso", Ledoit-Wolf's target), diagonal floored."""
    xc = x - mean
    s = (xc * r[:, None]).T @ xc / max(r.sum(), 1e-12)
    diag = np.diag(s)
    t = diag if target == "diag" else np.full_like(diag, diag.mean())
    out = (1 - shrink) * s + np.diag(shrink * t)
    return out + np.diag(np.maximum(floor - diag, 0.0) + 1e-3 * floor)


def _fit_gmm(x: np.ndarray, k: int, shrink: float, seed: int, iters: int = 60,
             target: str = "diag"):
    """EM for a k-component mixture (k-means++ start); ``(weights, means, chols)``."""
    rng = np.random.default_rng(seed)
    n = len(x)
    floor = 1e-4 * float(x.var(0).mean()) + 1e-8
    centers = [x[rng.integers(n)]]
    for _ in range(1, k):
        d2 = np.min([((x - c) ** 2).sum(1) for c in centers], 0)
        p = d2 / d2.sum() if d2.sum() > 0 else None
        centers.append(x[rng.choice(n, p=p)])
    d2 = np.stack([((x - c) ** 2).sum(1) for c in centers], 1)
    resp = np.eye(k)[d2.argmin(1)]
    prev = -np.inf
    for _ in range(iters):
        nk = resp.sum(0) + 1e-10
        w = nk / nk.sum()
        means = (resp.T @ x) / nk[:, None]
        chols = np.stack([np.linalg.cholesky(_covariance(x, resp[:, j], means[j], shrink,
                                                         floor, target)) for j in range(k)])
        logp = np.stack([_log_prob(x, np.ones(1), means[j:j + 1], chols[j:j + 1])
                         + math.log(w[j]) for j in range(k)], 1)
        top = logp.max(1, keepdims=True)
        total = top[:, 0] + np.log(np.exp(logp - top).sum(1))
        resp = np.exp(logp - total[:, None])
        if total.mean() - prev < 1e-6:
            break
        prev = total.mean()
    return w, means, chols


def _cv_score(x: np.ndarray, k: int, shrink: float, folds: int, seed: int,
              target: str = "diag") -> float:
    """Mean held-out log-likelihood per row over ``folds`` folds."""
    idx = np.random.default_rng(seed).permutation(len(x))
    scores = []
    for part in np.array_split(idx, folds):
        train = np.setdiff1d(idx, part)
        w, m, c = _fit_gmm(x[train], k, shrink, seed, target=target)
        scores.append(_log_prob(x[part], w, m, c).mean())
    return float(np.mean(scores))


def fit_density(codes: np.ndarray, *, seed: int = 0, max_components: int = 5,
                folds: int = 4, shrinkage: tuple[float, ...] = SHRINKAGE,
                targets: tuple[str, ...] = TARGETS) -> Density:
    """Fit the latent density of ``codes`` (n, *latent_shape), choosing the number of
    components and the shrinkage by ``folds``-fold held-out log-likelihood.

    Raises:
        DataError: fewer than 4 codes, or non-finite codes.
    """
    codes = np.asarray(codes, np.float64)
    if len(codes) < 4 or not np.all(np.isfinite(codes)):
        raise DataError(f"a latent density needs at least 4 finite codes, got {len(codes)}")
    shape = tuple(int(v) for v in codes.shape[1:])
    x = codes.reshape(len(codes), -1)
    folds = max(2, min(folds, len(x) // 4))
    per_fold = len(x) - len(x) // folds
    ks = [k for k in range(1, max_components + 1) if k == 1 or per_fold >= 8 * k]
    if x.shape[1] > MAX_MIXTURE_DIM:  # large (spatial) latents: the shrunk Gaussian only
        ks = [1]
    sel = x
    if len(x) > MAX_SELECT_CODES:
        sel = x[np.random.default_rng(seed).choice(len(x), MAX_SELECT_CODES, replace=False)]
        # thousands of codes estimate a covariance well; the scaled-identity target is for
        # small supports, and the doubled grid cost a 20,000-row export 7 s (26.5 -> 33.6 s)
        targets = targets[:1]
    grid = {(k, a, t): _cv_score(sel, k, a, folds, seed, t) for k in ks for a in shrinkage
            for t in targets}
    k, a, t = max(grid, key=grid.get)
    w, m, c = _fit_gmm(x, k, a, seed, target=t)
    info = {"kind": "gmm", "components": k, "shrinkage": a, "shrinkage_target": t,
            "n_codes": len(x),
            "selection": f"{folds}-fold held-out log-likelihood per code"
                         + (f" on {len(sel)} seeded codes" if len(sel) < len(x) else ""),
            "cv_loglik": {f"k{kk}-s{aa}" + ("" if tt == "diag" else f"-{tt}"): round(v, 4)
                          for (kk, aa, tt), v in grid.items()}}
    return Density(w, m, c, shape, info)


def fit_residual(resid: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, chol)`` of the residual noise model of flattened residuals (n, d): one
    shrunk Gaussian as :func:`fit_density` chooses it, or (d > MAX_FULL_RESIDUAL) the
    per-value means and stds."""
    return pooled_residual(resid, seed)[:2]


def pooled_residual(resid: np.ndarray, seed: int = 0, targets: tuple[str, ...] = ("diag",)
                    ) -> tuple[np.ndarray, np.ndarray, tuple[float, str] | None]:
    """:func:`fit_residual` and the (shrinkage, target) it chose (None: diagonal).
    ``targets``: the diagonal only by default (raw units, where a scaled identity would
    mix features of unrelated scales: a wine train task lost MMD^2 0.10 with it); the
    exporter passes both for residuals it has standardised (:mod:`.density_residual`)."""
    x = np.asarray(resid, np.float64).reshape(len(resid), -1)
    if x.shape[1] > MAX_FULL_RESIDUAL:
        return x.mean(0).astype(np.float32), x.std(0).astype(np.float32), None
    g = fit_density(x, seed=seed, max_components=1, targets=targets)
    return (g.means[0].astype(np.float32), g.chols[0].astype(np.float32),
            (float(g.info["shrinkage"]), g.info["shrinkage_target"]))
