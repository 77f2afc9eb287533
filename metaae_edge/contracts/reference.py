"""The reference maths of the per-sample score and the per-pixel error map: the one copy.

The exported graphs trace these functions (:mod:`metaae_edge.exporters.onnx`), and the
parity gate, the torch benchmark, adaptation and evaluation call them on torch tensors, so
every number a user sees is computed in one op order. The functions use tensor methods
only, so this module never imports torch (nor does any contract that calls it).

Why ``sum * (1 / n)`` and ``sum / (H * W)`` rather than ``mean``: the dynamo exporter only
writes opset >= 18, and onnx cannot convert ReduceMean-18 down to opset 17; ReduceSum takes
its axes as an input since opset 13, so graphs written this way need no conversion.
"""

from __future__ import annotations

from typing import Any

__all__ = ["image_errors", "vector_score"]


def vector_score(d: Any, inv_d: float) -> Any:
    """Per-sample score of (batch, D) errors ``d = recon - z``: ``mean(d^2, axis=1)``.

    Args:
        d: the model-space reconstruction error, a (batch, D) tensor.
        inv_d: ``1 / D`` (a Python float, so the exported graph holds a constant).
    """
    return (d * d).sum(dim=1) * inv_d


def image_errors(d: Any, inv_c: float, pixels: Any) -> tuple[Any, Any]:
    """(per-sample score (batch,), per-pixel error map (batch, 1, H, W)) of NCHW errors.

    The error map is the squared error averaged over channels; the score its mean over H
    and W.

    Args:
        d: the model-space reconstruction error, a (batch, C, H, W) tensor.
        inv_c: ``1 / C``.
        pixels: ``H * W``; in the exported graph taken from the input's shape, so any
            resolution divides by its own.
    """
    error_map = (d * d).sum(dim=1, keepdim=True) * inv_c
    return error_map.sum(dim=(1, 2, 3)) / pixels, error_map
