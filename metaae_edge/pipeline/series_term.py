"""A shift-tolerant nearest-neighbour term for rows declared as time series, in the graph.

A row declared as a series (``series = C``: ``C`` channels of ``T`` time-ordered samples,
flattened channel-major, feature ``c * T + t``; the whole-series real datasets and, for
windows, their ``channels``) is compared with the stored support series under a bounded
time shift: the distance of a query ``x`` to a bank series ``y`` is

    d(x, y) = min_{|s| <= w} || shift_s(x) - y ||^2,

``shift_s`` moving every channel by ``s`` samples with zero fill (no wrap-around), summed
over channels. The score is the distance to the ``k``-th nearest bank series plus a
floor of :data:`DIST_FLOOR` per sample and channel, square-rooted (as ``KnnTerm``).
Expanded, ``d_s = sum_t shift_s(x)_t^2 + |y|^2 - 2 <shift_s(x), y>``: both sums over
``t`` are one Conv1d each of the (zero-padded) query, with the bank as filters and with a
ones filter, so the graph is Conv, TopK, Sqrt (no loop over shifts).

Before the shift each series is mapped back to raw units (``z * std + mean``, the bundle's
normaliser) and, with ``znorm`` (UCR practice), z-normalised per row and channel:
``(x - mean_t x) / sqrt(var_t x + eps_c)``, ``eps_c`` a floor of 1e-2 of channel c's mean
per-row variance on the fit rows (a flat series is not blown up to unit variance). Without
``znorm`` each channel is divided by its overall raw std on the fit rows. With ``diff``
each channel's first difference (``dx_t = x_t - x_{t-1}``, ``dx_0 = 0``, divided by its
std on the fit rows) joins as one more channel (:class:`SeriesPrep`, shared with the
MiniRocket term of :mod:`.rocket_term`).

:func:`shift_knn_reference` is the numpy reference of :class:`ShiftKnnTerm` (an explicit
loop over shifts); the tests compare the two, in torch and served, and check that a query
that is a shifted copy of a bank series scores 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["SeriesPrep", "ShiftKnnTerm", "fit_series", "series_rows", "series_term",
           "shift_knn_reference"]

#: the floor of the per-row variance, as a fraction of the fit rows' mean per-row variance
VAR_FLOOR = 1e-2
#: added to the squared distance, per sample and channel (a query equal to a bank series
#: would score sqrt(0): float32 rounding there differs between torch and onnxruntime,
#: amplified by the square roots of the score and of the vector contract; monotone, so the
#: ranking is unchanged)
DIST_FLOOR = 1e-3


def _prep(z: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """(N, C, T) series of model-space rows ``z`` (``2C`` channels with ``diff``: each
    channel's first difference after it, ``dx_0 = 0``, divided by its fit-row std)."""
    x = np.asarray(z, np.float64) * cfg["std"] + cfg["mean"]
    x = x.reshape(len(x), cfg["channels"], -1)
    if not cfg["znorm"]:
        x = x / cfg["scale"][None, :, None]
    else:
        c = x - x.mean(axis=2, keepdims=True)
        x = c / np.sqrt((c * c).mean(axis=2, keepdims=True) + cfg["eps"][None, :, None])
    if not cfg.get("diff"):
        return x
    dx = np.zeros_like(x)
    dx[:, :, 1:] = (x[:, :, 1:] - x[:, :, :-1]) / cfg["dscale"][None, :, None]
    return np.concatenate([x, dx], axis=1)


def fit_series(z: np.ndarray, normalizer, channels: int, znorm: bool,
               diff: bool = False) -> dict[str, Any]:
    """The preprocessing constants, fitted on model-space fit rows ``z`` (``diff``: add
    the first-difference channels, scaled by their std on the fit rows)."""
    mean = np.asarray(normalizer.mean, np.float64).reshape(-1)
    std = np.asarray(normalizer.std, np.float64).reshape(-1)
    x = (np.asarray(z, np.float64) * std + mean).reshape(len(z), channels, -1)
    row_var = x.var(axis=2).mean(axis=0)
    cfg = {"channels": int(channels), "mean": mean, "std": std, "znorm": bool(znorm),
           "eps": VAR_FLOOR * np.maximum(row_var, 1e-12),
           "scale": np.maximum(x.transpose(1, 0, 2).reshape(channels, -1).std(axis=1),
                               1e-6), "diff": False}
    if diff:
        p = _prep(z, cfg)
        d = (p[:, :, 1:] - p[:, :, :-1]).transpose(1, 0, 2).reshape(channels, -1)
        cfg.update(diff=True, dscale=np.maximum(d.std(axis=1), 1e-6))
    return cfg


def series_rows(z: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """The preprocessed series of ``z`` (the bank rows of :class:`ShiftKnnTerm`)."""
    return _prep(z, cfg)


def shift_knn_reference(z: np.ndarray, bank: np.ndarray, cfg: dict[str, Any], w: int,
                        k: int) -> np.ndarray:
    """The numpy reference: k-th smallest ``min_s |shift_s(x) - y|^2`` over the bank
    (preprocessed series ``bank``, (B, C, T)), plus the floor, square-rooted."""
    x = _prep(z, cfg)
    t = x.shape[2]
    best = np.full((len(x), len(bank)), np.inf)
    for s in range(-w, w + 1):
        xs = np.zeros_like(x)
        if s >= 0:
            xs[:, :, s:] = x[:, :, :t - s]
        else:
            xs[:, :, :t + s] = x[:, :, -s:]
        d = ((xs[:, None] - bank[None]) ** 2).sum(axis=(2, 3))
        best = np.minimum(best, d)
    kk = min(k, len(bank))
    floor = DIST_FLOOR * x.shape[1] * t
    return np.sqrt(np.maximum(np.sort(best, axis=1)[:, kk - 1], 0.0) + floor)


def _buf(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, np.float32))


class SeriesPrep(nn.Module):
    """The graph of the preprocessing (:func:`series_rows`): model-space rows in,
    (N, C or 2C, T) series out."""

    def __init__(self, cfg: dict[str, Any], t: int):
        super().__init__()
        self.c, self.t = int(cfg["channels"]), int(t)
        self.znorm, self.diff = bool(cfg["znorm"]), bool(cfg.get("diff"))
        self.register_buffer("mean", _buf(cfg["mean"]))
        self.register_buffer("std", _buf(cfg["std"]))
        self.register_buffer("eps", _buf(np.asarray(cfg["eps"]).reshape(1, self.c, 1)))
        self.register_buffer("inv_scale",
                             _buf(1.0 / np.asarray(cfg["scale"]).reshape(1, self.c, 1)))
        if self.diff:
            self.register_buffer("inv_dscale",
                                 _buf(1.0 / np.asarray(cfg["dscale"]).reshape(1, self.c, 1)))

    @property
    def out_channels(self) -> int:
        return 2 * self.c if self.diff else self.c

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # sums times 1/T, not mean(): ReduceMean-18 cannot be converted to opset 17
        x = (z * self.std + self.mean).reshape(-1, self.c, self.t)
        if not self.znorm:
            x = x * self.inv_scale
        else:
            c = x - (x.sum(dim=2, keepdim=True) * (1.0 / self.t))
            var = (c * c).sum(dim=2, keepdim=True) * (1.0 / self.t)
            x = c / torch.sqrt(var + self.eps)
        if not self.diff:
            return x
        dx = (x[:, :, 1:] - x[:, :, :-1]) * self.inv_dscale
        return torch.cat([x, torch.cat([x[:, :, :1] * 0.0, dx], dim=2)], dim=1)


class ShiftKnnTerm(nn.Module):
    """The graph of :func:`shift_knn_reference` (model-space rows in, score out)."""

    def __init__(self, bank: np.ndarray, cfg: dict[str, Any], w: int, k: int):
        super().__init__()
        bank = np.asarray(bank, np.float64)
        self.prep = SeriesPrep(cfg, bank.shape[2])
        self.c, self.t = bank.shape[1], bank.shape[2]
        self.w = int(min(max(w, 0), self.t - 1))
        self.k = int(min(k, len(bank)))
        self.znorm = bool(cfg["znorm"])
        self.floor = DIST_FLOOR * self.c * self.t
        self.register_buffer("bank", _buf(bank))  # (B, C, T): Conv1d filters
        self.register_buffer("bank_sq", _buf((bank * bank).sum(axis=(1, 2)).reshape(1, -1, 1)))
        self.register_buffer("ones", _buf(np.ones((1, self.c, self.t))))
        #: values per sample of the widest activation (the cross term, bank x shifts)
        self.activation_width = len(bank) * (2 * self.w + 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.prep(z)
        # zero padding by the Conv's own pads (a Pad node would be opset 18); output j
        # holds shift s = w - j: sum_t x_pad[t + j] * y[t]
        cross = F.conv1d(x, self.bank, padding=self.w)  # (N, B, 2w + 1)
        x_sq = F.conv1d(x * x, self.ones, padding=self.w)  # (N, 1, 2w + 1): |shift_s(x)|^2
        d2 = x_sq + self.bank_sq - 2.0 * cross
        best = torch.topk(d2, 1, dim=2, largest=False).values[:, :, 0]  # min over shifts
        kth = torch.topk(best, self.k, dim=1, largest=False).values[:, self.k - 1]
        return torch.sqrt(torch.relu(kth) + self.floor)


def series_term(z: np.ndarray, normalizer, channels: int, znorm: bool, w_frac: float,
                k: int, seed: int = 0, diff: bool = False) -> ShiftKnnTerm:
    """:class:`ShiftKnnTerm` fitted on model-space fit rows ``z``: the largest shift is
    ``round(w_frac * T)`` samples; the bank is the preprocessed fit rows, or above
    ``BANK_MAX`` rows their k-means prototypes (as the kNN terms' banks); ``diff`` adds
    each channel's first difference as a channel."""
    from .detector_candidates import _bank

    cfg = fit_series(z, normalizer, channels, znorm, diff)
    rows = series_rows(z, cfg)
    n, c, t = rows.shape
    bank = _bank(rows.reshape(n, -1), seed).reshape(-1, c, t)
    return ShiftKnnTerm(bank, cfg, int(round(w_frac * t)), k)
