"""Activation functions and input filters shared by the supernet and the compact network."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DataError

__all__ = ["activation_fn", "bypass_basis", "from_grid", "median3x3", "prefilter_fn",
           "to_grid"]

_ACTS = {
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.1),
    "hardswish": F.hardswish,
    "tanh": torch.tanh,
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
}


def activation_fn(name: str):
    """The torch function for an activation name of :mod:`metaae_edge.spec`."""
    return _ACTS[name]


# Devillard's / Paeth's median-of-9 network: 19 compare-exchanges (a, b) -> (min, max).
_MEDIAN9 = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3),
            (5, 8), (4, 7), (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2))


def median3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 median of images (..., H, W), borders edge-replicated (scipy's ``nearest``).

    Built from slices, Concat and elementwise Min / Max only (a sorting network), so it
    exports to plain ONNX that TensorRT parses, with dynamic H and W, and runs in INT8
    graphs unchanged. Gradients flow to the selected pixel (a subgradient).
    """
    p = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=-2)
    p = torch.cat([p[..., :1], p, p[..., -1:]], dim=-1)
    h, w = x.shape[-2], x.shape[-1]
    v = [p[..., i:i + h, j:j + w] for i in range(3) for j in range(3)]
    for a, b in _MEDIAN9:
        v[a], v[b] = torch.minimum(v[a], v[b]), torch.maximum(v[a], v[b])
    return v[4]


_PREFILTERS = {"none": lambda x: x, "median3": median3x3}


def prefilter_fn(name: str):
    """The torch function for a prefilter name of :data:`metaae_edge.spec.PREFILTERS`."""
    return _PREFILTERS[name]


def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Resize (B, C, h0, w0) to (h, w) with static ops: average pooling where both sides
    shrink by whole factors, nearest up-sampling where both grow by whole factors, else
    bilinear (half-pixel centres). Each exports to one ONNX AveragePool or Resize."""
    h0, w0 = int(x.shape[-2]), int(x.shape[-1])
    if (h0, w0) == (h, w):
        return x
    if h0 % h == 0 and w0 % w == 0:
        return F.avg_pool2d(x, (h0 // h, w0 // w))
    if h % h0 == 0 and w % w0 == 0:
        return F.interpolate(x, scale_factor=(h // h0, w // w0), mode="nearest")
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def to_grid(x: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, grid, grid): the dense bottleneck's input grid."""
    return _resize(x, grid, grid)


def from_grid(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, C, grid, grid) -> (B, C, h, w): back to the latent resolution."""
    return _resize(x, h, w)


def bypass_basis(basis: torch.Tensor | None, d: int, n: int) -> torch.Tensor:
    """A linear bypass's task principal directions as a (d, n) matrix (zero-padded)."""
    if basis is None:
        raise DataError("this supernet has a linear bypass and needs the task's principal "
                        "directions: pass TaskBatch.basis (make_batch computes it)")
    if basis.ndim != 2 or basis.shape[0] != d:
        raise DataError(f"bypass basis must be ({d}, r), got {tuple(basis.shape)}")
    u = basis[:, :n]
    return F.pad(u, (0, n - u.shape[1])) if u.shape[1] < n else u
