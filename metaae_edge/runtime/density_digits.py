"""A structured location prior for the ``digits`` family (session 31).

A digits task is 2-5 of the 10 classes under one augmentation (mirror, a +-1 pixel shift,
an intensity gamma; :mod:`metaae_edge.tasks.digits`), so its mean is a mixture of class
means, not a draw around one Gaussian mean (session 30's prior refused or hurt it).
Learned on the train image pool only: for each gamma of a grid :data:`GAMMAS` spanning
the family's range, the class means of ``x ** gamma`` and one within-class variance per
pixel (pooled over classes); mirror and shift are pixel permutations with zero fill, so
they are applied to those means and variances at fit time (``x ** gamma`` commutes with
them). For a support, every augmentation of the grid (2 mirrors x 3 x 3 shifts x the
gammas) is scored by the support's mean per-row log-likelihood under a mixture of the 10
augmented class Gaussians (diagonal, weights by a few EM steps); the best one gives the
class shares ``pi`` and the location ``m = sum_c pi_c atom_c``; the shift is
``shrink * (m - support mean)``. A support fitting no augmentation well (mean per-row
log-likelihood below ``refuse_below``, set on train tasks) gets no shift.

Torch-free (numpy); what is stored beside ``location_priors.json`` is
:data:`DIGITS_PRIOR_FILE` (a few thousand floats); bundles store only the shift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DIGITS_PRIOR_FILE", "GAMMAS", "DigitsFit", "DigitsPrior", "augmentations",
           "digits_shift", "fit_support", "load_digits_prior"]

#: the prior's file, beside the shipped checkpoints and ``location_priors.json``
DIGITS_PRIOR_FILE = Path(__file__).resolve().parent.parent / "checkpoints" / \
    "digits_location_prior.json"
#: the gamma grid (log-spaced over the family's 0.7-1.4)
GAMMAS = tuple(float(g) for g in np.exp(np.linspace(np.log(0.7), np.log(1.4), 9)))
_SIDE = 8
_EM_STEPS = 15
#: rows' worth of responsibility that make a class present (``shares="equal"``)
PRESENT_ROWS = 2.0


@dataclass(frozen=True)
class DigitsPrior:
    """Class means ``(G, 10, 64)`` and pooled within-class variances ``(G, 64)`` of
    ``x ** gamma`` for ``gammas`` (G,), the variance floor, the shrinkage of the move and
    the refusal threshold (mean per-row log-likelihood)."""

    gammas: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    floor: float = 0.005
    shrink: float = 1.0
    refuse_below: float = -np.inf
    shares: str = "support"  # or "equal": equal shares over the classes present
    residual_rank: int = 0  # the factor residual's rank the bundle takes with it (0: none)

    def to_json(self) -> dict:
        r = lambda a: np.round(np.asarray(a, np.float64), 5).tolist()  # noqa: E731
        return {"gammas": r(self.gammas), "means": r(self.means),
                "variances": r(self.variances), "floor": self.floor,
                "shrink": self.shrink, "refuse_below": self.refuse_below,
                "shares": self.shares, "residual_rank": self.residual_rank}

    @classmethod
    def from_json(cls, obj: dict) -> DigitsPrior:
        return cls(np.asarray(obj["gammas"], np.float64),
                   np.asarray(obj["means"], np.float64),
                   np.asarray(obj["variances"], np.float64), float(obj["floor"]),
                   float(obj["shrink"]), float(obj["refuse_below"]),
                   str(obj.get("shares", "support")), int(obj.get("residual_rank", 0)))

    @classmethod
    def from_images(cls, images: np.ndarray, labels: np.ndarray, **kw) -> DigitsPrior:
        """From pool images (n, 8, 8) in [0, 1] and their labels (classes 0-9)."""
        x = np.asarray(images, np.float64).reshape(len(images), -1)
        means, variances = [], []
        for g in GAMMAS:
            xg = x ** g
            mu = np.stack([xg[labels == c].mean(0) for c in range(10)])
            variances.append(((xg - mu[labels]) ** 2).mean(0))
            means.append(mu)
        return cls(np.asarray(GAMMAS), np.stack(means), np.stack(variances), **kw)


@dataclass(frozen=True)
class DigitsFit:
    """The support's best augmentation ``(flip, dy, dx, gamma)``, class shares (10,),
    per-row class responsibilities (n, 10), mean per-row log-likelihood and the
    augmented class means (10, 64)."""

    augmentation: tuple[bool, int, int, float]
    shares: np.ndarray
    resp: np.ndarray
    loglik: float
    atoms: np.ndarray

    def location(self, shares: str = "support") -> np.ndarray:
        """``sum_c w_c atom_c``: ``w`` the support's class shares, or (``"equal"``) equal
        over the classes holding at least :data:`PRESENT_ROWS` rows' responsibility (a
        task's pool holds about as many images of each of its classes, and its support
        and query split them)."""
        w = self.shares
        if shares == "equal":
            present = self.resp.sum(0) >= min(PRESENT_ROWS, float(self.resp.sum(0).max()))
            w = present / present.sum()
        return w @ self.atoms


def _move(a: np.ndarray, flip: bool, dy: int, dx: int, fill: float) -> np.ndarray:
    """``a`` (..., 64) as 8x8 images mirrored and shifted like the family's ``_augment``
    (the vacated row / column set to ``fill``)."""
    x = a.reshape(*a.shape[:-1], _SIDE, _SIDE)
    x = x[..., ::-1] if flip else x
    x = np.roll(x, (dy, dx), axis=(-2, -1)).copy()
    if dy:
        x[..., 0 if dy == 1 else -1, :] = fill
    if dx:
        x[..., :, 0 if dx == 1 else -1] = fill
    return x.reshape(a.shape)


def augmentations(prior: DigitsPrior):
    """Every ``(flip, dy, dx, gamma index)`` of the grid."""
    for flip in (False, True):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                for gi in range(len(prior.gammas)):
                    yield flip, dy, dx, gi


def _mixture(x: np.ndarray, mu: np.ndarray, var: np.ndarray
             ) -> tuple[float, np.ndarray, np.ndarray]:
    """``(mean per-row log-likelihood, shares (10,), resp (n, 10))`` of rows ``x`` under
    the 10 diagonal Gaussians ``mu`` (10, 64) with variances ``var`` (64,), the weights
    by :data:`_EM_STEPS` EM steps from uniform."""
    lp = -0.5 * ((((x[:, None, :] - mu[None]) ** 2) / var).sum(2)
                 + np.log(2 * np.pi * var).sum())
    pi = np.full(len(mu), 1.0 / len(mu))
    for _ in range(_EM_STEPS + 1):
        a = lp + np.log(np.maximum(pi, 1e-300))
        top = a.max(1, keepdims=True)
        ll = top[:, 0] + np.log(np.exp(a - top).sum(1))
        resp = np.exp(a - ll[:, None])
        pi = resp.mean(0)
    return float(ll.mean()), pi, resp


def fit_support(support: np.ndarray, prior: DigitsPrior) -> DigitsFit | None:
    """The best augmentation of the grid for ``support`` (n, 64) raw rows and what it
    implies (:class:`DigitsFit`); None when the rows are not 64 values."""
    x = np.asarray(support, np.float64).reshape(len(support), -1)
    if x.shape[1] != _SIDE * _SIDE or len(x) < 2:
        return None
    best = None
    for flip, dy, dx, gi in augmentations(prior):
        mu = _move(prior.means[gi], flip, dy, dx, 0.0)
        var = np.maximum(_move(prior.variances[gi], flip, dy, dx, 0.0), prior.floor)
        ll, pi, resp = _mixture(x, mu, var)
        if best is None or ll > best[0]:
            best = (ll, (flip, dy, dx, float(prior.gammas[gi])), pi, resp, mu)
    return DigitsFit(best[1], best[2], best[3], best[0], best[4])


def digits_shift(support: np.ndarray, prior: DigitsPrior) -> np.ndarray | None:
    """``shrink * (m - support mean)`` (raw units) of ``support``, or None when the prior
    does not describe it (not 64 values, or the fit's log-likelihood is below
    ``refuse_below``)."""
    fit = fit_support(support, prior)
    if fit is None or not np.isfinite(fit.loglik) or fit.loglik < prior.refuse_below:
        return None
    x = np.asarray(support, np.float64).reshape(len(support), -1)
    return prior.shrink * (fit.location(prior.shares) - x.mean(0))


def load_digits_prior(path: str | Path = DIGITS_PRIOR_FILE) -> DigitsPrior | None:
    """The stored prior, or None when the file does not exist."""
    p = Path(path)
    return DigitsPrior.from_json(json.loads(p.read_text())) if p.exists() else None
