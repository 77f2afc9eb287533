"""A phase-invariant front-end for multichannel signal windows, inside the exported graph.

A row the user declares as a window (``adapt-and-export --channels C``; the ``sensors``
family and the windowed real datasets know theirs) is ``C`` channels of ``T`` samples
flattened channel-major (feature ``c * T + t``). Distance and density detectors in raw
window space compare samples at the same time index, so two windows of one activity at
different phases are far apart and a low-energy window can sit near the centre of
high-energy ones (docs/real_data.md, basicmotions). The front-end maps a window to
features that do not depend on where the window starts:

- per channel its mean and its log variance (``log(var + eps_c)``);
- per channel the log power ``log(|X_k|^2 / T + eps_c)`` of the DFT of the centred channel
  at frequencies ``k = 1 .. T // 2``.

All three are invariant to a circular shift of the window (exactly: the DFT magnitude of
a circularly shifted sequence is unchanged), and close to invariant to an ordinary shift
of a window cut from a longer stationary signal. In the graph: the model-space input is
mapped back to raw units (``z * std + mean``, the bundle's own normaliser), reshaped to
(N * C, T), centred, one MatMul with a fixed ``(T, 2K)`` cos/sin basis, squares, a pair
sum, a Log; then the features are standardised on the fit rows (floored std) so that the
detectors behind it see unit-scale columns. ``eps_c`` is 1e-3 of channel c's mean
variance on the fit rows (log of exact zeros, e.g. a constant channel, stays finite).

:func:`window_features` is the numpy reference of :class:`WindowFront`; the tests compare
the two and check the shift invariance of the exported graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..tasks.userdata import check_channels

__all__ = ["FrontTerm", "WindowFront", "check_channels", "dft_basis", "fit_front",
           "window_features"]


def dft_basis(t: int) -> np.ndarray:
    """``(T, 2K)``: cos then sin of ``2 pi k t / T`` for ``k = 1 .. T // 2``."""
    k = np.arange(1, t // 2 + 1)
    ang = 2 * np.pi * np.outer(np.arange(t), k) / t
    return np.concatenate([np.cos(ang), np.sin(ang)], axis=1)


def _raw_features(x: np.ndarray, channels: int, eps: np.ndarray) -> np.ndarray:
    """Unstandardised features of raw rows ``x`` (N, C*T): means, log var, log power."""
    n = len(x)
    w = x.reshape(n, channels, -1)
    t = w.shape[2]
    mean = w.mean(axis=2)
    c = w - mean[:, :, None]
    var = (c * c).mean(axis=2)
    proj = c @ dft_basis(t)
    k = proj.shape[2] // 2
    power = (proj[..., :k] ** 2 + proj[..., k:] ** 2) / t
    return np.concatenate([mean, np.log(var + eps),
                           np.log(power + eps[:, None]).reshape(n, -1)], axis=1)


def fit_front(z: np.ndarray, normalizer, channels: int) -> dict[str, Any]:
    """The front-end's constants, fitted on model-space fit rows ``z``."""
    x = normalizer.inverse(np.asarray(z, np.float32)).astype(np.float64)
    w = x.reshape(len(x), channels, -1)
    var = w.var(axis=2).mean(axis=0)
    eps = 1e-3 * np.maximum(var, 1e-12)
    f = _raw_features(x, channels, eps)
    sd = f.std(axis=0)
    sd = np.maximum(sd, max(float(sd.mean()) * 1e-2, 1e-6))
    return {"channels": int(channels), "mean": np.asarray(normalizer.mean, np.float64),
            "std": np.asarray(normalizer.std, np.float64), "eps": eps,
            "f_mean": f.mean(axis=0), "f_std": sd}


def window_features(z: np.ndarray, front: dict[str, Any]) -> np.ndarray:
    """The numpy reference: standardised window features of model-space rows ``z``."""
    x = np.asarray(z, np.float64) * front["std"] + front["mean"]
    f = _raw_features(x, front["channels"], front["eps"])
    return (f - front["f_mean"]) / front["f_std"]


def _buf(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, np.float32))


class WindowFront(nn.Module):
    """The graph of :func:`window_features` (model-space rows in, features out)."""

    def __init__(self, front: dict[str, Any]):
        super().__init__()
        self.c = int(front["channels"])
        d = len(front["mean"])
        self.t = d // self.c
        self.k = self.t // 2
        self.register_buffer("mean", _buf(front["mean"]))
        self.register_buffer("std", _buf(front["std"]))
        self.register_buffer("eps", _buf(np.asarray(front["eps"]).reshape(1, self.c)))
        self.register_buffer("eps_k", _buf(np.asarray(front["eps"]).reshape(1, self.c, 1)))
        self.register_buffer("basis", _buf(dft_basis(self.t) / np.sqrt(self.t)))
        self.register_buffer("f_mean", _buf(front["f_mean"]))
        self.register_buffer("f_inv", _buf(1.0 / np.asarray(front["f_std"])))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # sums times 1/T, not mean(): ReduceMean-18 cannot be converted to opset 17
        # (see metaae_edge/exporters/onnx.py)
        x = (z * self.std + self.mean).reshape(-1, self.c, self.t)
        m = x.sum(dim=2) * (1.0 / self.t)
        c = x - m.unsqueeze(2)
        var = (c * c).sum(dim=2) * (1.0 / self.t)
        p = c @ self.basis
        power = p[..., :self.k] * p[..., :self.k] + p[..., self.k:] * p[..., self.k:]
        logp = torch.log(power + self.eps_k).reshape(-1, self.c * self.k)
        f = torch.cat([m, torch.log(var + self.eps), logp], dim=1)
        return (f - self.f_mean) * self.f_inv


class FrontTerm(nn.Module):
    """A detector term applied to the window features: ``term(front(z))``."""

    def __init__(self, front: nn.Module, term: nn.Module):
        super().__init__()
        self.front = front
        self.term = term

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.term(self.front(z))
