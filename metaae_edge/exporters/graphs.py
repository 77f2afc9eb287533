"""Names and constants of the exported graphs (no torch, no onnx): which graphs a bundle
holds, their inputs, outputs and dynamic axes, the parity tolerances and score definitions.

The per-kind tables live with the IO contracts (:mod:`metaae_edge.contracts`); this module
keeps the exporters' names for them.
"""

from __future__ import annotations

from ..contracts import (
    CONV_DIM_NAMES,
    CONV_GRAPHS,
    ERROR_MAP_DEFINITION,
    GRAPHS,
    SCORE_DEFINITION,
    contract_for,
)
from ..spec import ArchSpec

__all__ = [
    "GRAPHS", "CONV_GRAPHS", "CONV_DIM_NAMES", "DEFAULT_TOLERANCES", "MAX_OPSET",
    "SCORE_DEFINITION", "ERROR_MAP_DEFINITION", "graphs_for", "conv_dims",
]

#: output -> (atol, rtol) for fp32; reconstruction is compared in model (normalised) units.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "reconstruction": (1e-4, 1e-3),
    "latent": (1e-4, 1e-3),
    "score": (1e-4, 1e-3),
    "error_map": (1e-4, 1e-3),
}
MAX_OPSET = 20


def conv_dims(spec: ArchSpec) -> dict[str, tuple[str | int | None, ...]]:
    """The expected axes of a conv spec's graph inputs / outputs: a name for a dynamic axis,
    an int for a static one whose size is known, None for any static size (see
    :meth:`~metaae_edge.contracts.IOContract.graph_dims`)."""
    return contract_for(spec).graph_dims()


def graphs_for(spec: ArchSpec) -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """The graphs (file, inputs, outputs per role) a model of ``spec`` exports to."""
    return contract_for(spec).graphs
