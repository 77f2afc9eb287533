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

__all__ = ["image_errors", "image_outputs", "vector_outputs", "vector_score"]


def vector_score(d: Any, inv_d: float) -> Any:
    """Per-sample score of (batch, D) errors ``d = recon - z``: ``mean(d^2, axis=1)``.

    Args:
        d: the model-space reconstruction error, a (batch, D) tensor.
        inv_d: ``1 / D`` (a Python float, so the exported graph holds a constant).
    """
    return (d * d).sum(dim=1) * inv_d


def image_errors(d: Any, inv_c: float, x: Any) -> tuple[Any, Any]:
    """(per-sample score (batch,), per-pixel error map (batch, 1, H, W)) of NCHW errors.

    The error map is the squared error averaged over channels; the score its mean over H
    and W.

    Args:
        d: the model-space reconstruction error, a (batch, C, H, W) tensor.
        inv_c: ``1 / C``.
        x: a tensor of the input's shape whose H * W divides the score (in the exported
            graph the input itself, so any resolution divides by its own; read after the
            error map, as the graph's op order has it).
    """
    error_map = (d * d).sum(dim=1, keepdim=True) * inv_c
    return error_map.sum(dim=(1, 2, 3)) / (x.shape[2] * x.shape[3]), error_map


def vector_outputs(x: Any, z: Any, latent: Any, recon: Any, mean: Any, std: Any,
                   inv_d: float) -> tuple[Any, Any, Any]:
    """(raw reconstruction, latent, score) of a vector model, in the exported op order."""
    d = recon - z
    return recon * std + mean, latent, vector_score(d, inv_d)


def image_outputs(x: Any, z: Any, latent: Any, recon: Any, mean: Any, std: Any,
                  inv_c: float) -> tuple[Any, Any, Any, Any]:
    """(raw reconstruction, latent, score, error map) of an image model, in the exported op
    order; ``x``'s H * W (symbolic in the exported graph) divides the score."""
    score, error_map = image_errors(recon - z, inv_c, x)
    return recon * std + mean, latent, score, error_map
