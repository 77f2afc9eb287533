"""A MiniRocket-style feature term for rows declared as time series, in the graph.

A row declared as series or windows (``C`` channels of ``T`` samples, channel-major) is
preprocessed as in :mod:`.series_term` (:class:`~.series_term.SeriesPrep`: raw units,
z-normalised per row or divided by the channel's std, optionally each channel's first
difference as one more channel), then convolved with a fixed bank of MiniRocket kernels
(Dempster et al. 2021): the 84 length-9 kernels whose weights are 2 at three positions and
-1 at the other six (they sum to 0, so a constant offset does not change the output), at
up to :data:`N_DILATIONS` dilations exponentially spaced in ``[1, (T - 1) // 8]``, zero
"same" padding. A kernel spans a seeded subset of the channels (MiniRocket's multivariate
rule: ``floor(2^U(0, log2(min(C, 9) + 1)))`` channels, summed). One bias per (kernel,
dilation): the ``q``-quantile of that convolution's outputs pooled over every fit row and
time step, ``q`` from the golden-ratio sequence (so the features are invariant to the
order of the fit rows). The feature is the proportion of positive values (PPV) of
``conv - bias`` over time, taken smoothly: ``mean_t sigmoid((conv_t - bias) / tau)`` with
``tau`` = :data:`TAU` times the pooled outputs' std, so float32 rounding between torch and
onnxruntime cannot flip a count (a hard ``conv > bias`` would change a feature by 1 / T on
a tie); apart from outputs within ``tau`` of the bias it is the PPV. The features are
standardised on the fit rows (std floored at :data:`SD_FLOOR` x their median std) and the
score is their Ledoit-Wolf Mahalanobis distance (``maha``, :class:`MahalanobisTerm`) or the
distance to the nearest fit row (``knn``, :class:`KnnTerm`, k = 1).

:func:`rocket_features_reference` is the numpy reference of :class:`RocketFeatures`
(explicit loop over kernel taps, float64); the tests compare the two, in torch and served.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .series_term import SeriesPrep, fit_series, series_rows

__all__ = ["N_DILATIONS", "RocketFeatures", "dilations", "fit_rocket", "kernel_weights",
           "rocket_features_reference", "rocket_score_term", "rocket_term"]

#: the kernel length of MiniRocket
KERNEL_LENGTH = 9
#: the most dilations per series length (84 features each)
N_DILATIONS = 5
#: the smooth PPV's width, as a fraction of the pooled convolution outputs' std
TAU = 1e-3
#: the floor of a feature's std on the fit rows, as a fraction of the median feature std
SD_FLOOR = 0.1
_PHI = (math.sqrt(5.0) - 1.0) / 2.0


def kernel_weights() -> np.ndarray:
    """(84, 9): weight 2 at three positions, -1 at the other six."""
    combos = list(itertools.combinations(range(KERNEL_LENGTH), 3))
    w = -np.ones((len(combos), KERNEL_LENGTH))
    for i, c in enumerate(combos):
        w[i, list(c)] = 2.0
    return w


def dilations(t: int) -> list[int]:
    """Up to :data:`N_DILATIONS` distinct dilations, exponentially spaced in
    ``[1, max(1, (T - 1) // 8)]`` (a kernel spans at most the series)."""
    top = max(1, (t - 1) // (KERNEL_LENGTH - 1))
    e = np.linspace(0.0, math.log2(top), N_DILATIONS)
    return sorted({int(d) for d in np.floor(2.0 ** e + 1e-9)})


def _bank_weights(channels: int, n_dil: int, seed: int) -> np.ndarray:
    """(n_dil, 84, channels, 9): each kernel on a seeded subset of the channels."""
    base = kernel_weights()
    rng = np.random.default_rng(seed)
    top = min(channels, KERNEL_LENGTH)
    out = np.zeros((n_dil, len(base), channels, KERNEL_LENGTH))
    for i in range(n_dil):
        for k in range(len(base)):
            m = int(2.0 ** rng.uniform(0.0, math.log2(top + 1)))
            chans = rng.choice(channels, min(max(m, 1), top), replace=False)
            out[i, k, chans] = base[k]
    return out


def _conv(x: np.ndarray, w: np.ndarray, d: int) -> np.ndarray:
    """(N, K, T): zero "same"-padded dilated convolution (cross-correlation), float64,
    an explicit loop over the kernel taps (the reference)."""
    n, c, t = x.shape
    half = (KERNEL_LENGTH - 1) // 2 * d
    xp = np.zeros((n, c, t + 2 * half))
    xp[:, :, half:half + t] = x
    out = np.zeros((n, w.shape[0], t))
    for j in range(KERNEL_LENGTH):
        out += np.einsum("kc,nct->nkt", w[:, :, j], xp[:, :, j * d:j * d + t])
    return out


def _conv_fast(x: np.ndarray, w: np.ndarray, d: int) -> np.ndarray:
    """:func:`_conv` by torch's float64 Conv1d (the fit's path: ~10x faster)."""
    with torch.no_grad():
        return F.conv1d(torch.as_tensor(x, dtype=torch.float64),
                        torch.as_tensor(w, dtype=torch.float64), padding=4 * d,
                        dilation=d).numpy()


def _ppv(out: np.ndarray, bias: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """(N, K): ``mean_t sigmoid((out - bias) / tau)``, float64."""
    a = (out - bias[None, :, None]) / tau[None, :, None]
    with torch.no_grad():
        return torch.sigmoid(torch.as_tensor(a)).mean(dim=2).numpy()


def _raw_features(x: np.ndarray, fit: dict[str, Any], conv=_conv,
                  chunk: int = 256) -> np.ndarray:
    """(N, F) unstandardised smooth-PPV features of preprocessed series ``x``."""
    rows = []
    for a in range(0, len(x), chunk):
        xs = x[a:a + chunk]
        rows.append(np.concatenate([_ppv(conv(xs, w, d), b, tau) for d, w, b, tau in zip(
            fit["dilations"], fit["weights"], fit["bias"], fit["tau"])], axis=1))
    return np.concatenate(rows, axis=0)


def fit_rocket(z: np.ndarray, normalizer, channels: int, znorm: bool, diff: bool,
               seed: int = 0) -> dict[str, Any]:
    """The term's constants, fitted on model-space fit rows ``z``: preprocessing, kernel
    bank, biases, PPV widths, feature mean and std."""
    series = fit_series(z, normalizer, channels, znorm, diff)
    x = series_rows(z, series)
    dil = dilations(x.shape[2])
    weights = _bank_weights(x.shape[1], len(dil), seed)
    bias, tau = [], []
    for i, (d, w) in enumerate(zip(dil, weights)):
        pooled = _conv_fast(x, w, d).transpose(1, 0, 2).reshape(w.shape[0], -1)
        q = np.mod((np.arange(w.shape[0]) + 1 + i * w.shape[0]) * _PHI, 1.0)
        bias.append(np.array([np.quantile(p, qi) for p, qi in zip(pooled, q)]))
        tau.append(TAU * np.maximum(pooled.std(axis=1), 1e-6))
    fit = {"series": series, "dilations": dil, "weights": weights, "bias": bias, "tau": tau}
    f = _raw_features(x, fit, _conv_fast)
    sd = f.std(axis=0)
    fit["feat_mean"] = f.mean(axis=0)
    fit["feat_sd"] = np.maximum(sd, max(SD_FLOOR * float(np.median(sd)), 1e-3))
    fit["fit_features"] = (f - fit["feat_mean"]) / fit["feat_sd"]
    return fit


def rocket_features_reference(z: np.ndarray, fit: dict[str, Any]) -> np.ndarray:
    """The numpy reference of :class:`RocketFeatures`: standardised features of ``z``."""
    f = _raw_features(series_rows(z, fit["series"]), fit)
    return (f - fit["feat_mean"]) / fit["feat_sd"]


def _buf(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, np.float32))


class RocketFeatures(nn.Module):
    """The graph of :func:`rocket_features_reference`: one Conv per dilation, Sub, Mul,
    Sigmoid, ReduceSum times 1/T, Concat, standardisation."""

    def __init__(self, fit: dict[str, Any], t: int):
        super().__init__()
        self.prep = SeriesPrep(fit["series"], t)
        self.dil = [int(d) for d in fit["dilations"]]
        self.t = int(t)
        for i, (w, b, tau) in enumerate(zip(fit["weights"], fit["bias"], fit["tau"])):
            self.register_buffer(f"w{i}", _buf(w))
            self.register_buffer(f"b{i}", _buf(np.asarray(b).reshape(1, -1, 1)))
            self.register_buffer(f"inv_tau{i}", _buf(1.0 / np.asarray(tau).reshape(1, -1, 1)))
        self.register_buffer("mean", _buf(fit["feat_mean"]))
        self.register_buffer("inv_sd", _buf(1.0 / np.asarray(fit["feat_sd"])))
        #: values per sample of the widest activation (one dilation's Conv output), which
        #: the exporter records so the runtime chunks large inputs by it
        self.activation_width = int(np.asarray(fit["weights"][0]).shape[0]) * self.t

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.prep(z)
        parts = []
        for i, d in enumerate(self.dil):
            out = F.conv1d(x, getattr(self, f"w{i}"), padding=4 * d, dilation=d)
            s = torch.sigmoid((out - getattr(self, f"b{i}")) * getattr(self, f"inv_tau{i}"))
            parts.append(s.sum(dim=2) * (1.0 / self.t))
        return (torch.cat(parts, dim=1) - self.mean) * self.inv_sd


def rocket_term(z: np.ndarray, normalizer, channels: int, znorm: bool, diff: bool,
                score: str = "maha", seed: int = 0) -> nn.Module:
    """The term fitted on model-space fit rows ``z``: ``score(features(z))``, ``score``
    ``maha`` (Ledoit-Wolf Mahalanobis on the standardised features) or ``knn`` (distance
    to the nearest fit row's features; above ``BANK_MAX`` rows, k-means prototypes)."""
    fit = fit_rocket(z, normalizer, channels, znorm, diff, seed)
    return rocket_score_term(fit, score, z.shape[1] // int(channels), seed)


def rocket_score_term(fit: dict[str, Any], score: str, t: int, seed: int = 0) -> nn.Module:
    """``score(features(z))`` of constants ``fit`` (:func:`fit_rocket`): the score on the
    fit rows' standardised features."""
    from .detector_candidates import _bank
    from .detector_graphs import KnnTerm, MahalanobisTerm
    from .window_features import FrontTerm

    feats = fit["fit_features"]
    if score == "maha":
        inner = MahalanobisTerm(feats)
    elif score == "knn":
        inner = KnnTerm(_bank(feats, seed), k=1)
    else:
        raise ValueError(f"unknown rocket score {score!r} (maha or knn)")
    return FrontTerm(RocketFeatures(fit, t), inner)
