"""Search spaces: torch supernets, discretisation and sub-network extraction.

Every supernet has the same shape: ``forward(x, probs)``, ``alpha()``,
``check_input_shape``, ``constrain_alpha`` and ``resource_cost``; :func:`discretize` and
:func:`extract` dispatch on the supernet's backbone, :func:`create_compact` on the spec's.
"""

from __future__ import annotations

import torch
from torch import nn

from ..spec import ArchSpec, SupernetConfig
from .compact import CompactAE
from .conv import CompactConvAE, ConvSupernet, discretize_conv, extract_conv
from .mlp import MLPSupernet, arch_probs
from .mlp import discretize as discretize_mlp
from .mlp import extract as extract_mlp

__all__ = [
    "CompactAE",
    "CompactConvAE",
    "ConvSupernet",
    "MLPSupernet",
    "Supernet",
    "arch_probs",
    "create_compact",
    "create_supernet",
    "discretize",
    "extract",
]

#: backbone name (``SupernetConfig.backbone``) -> supernet class
SUPERNETS: dict[str, type[nn.Module]] = {"mlp": MLPSupernet, "conv": ConvSupernet}
#: backbone name (``ArchSpec.backbone``) -> compact network class
COMPACT: dict[str, type[nn.Module]] = {"mlp": CompactAE, "conv": CompactConvAE}

Supernet = MLPSupernet | ConvSupernet


def create_supernet(cfg: SupernetConfig | None = None) -> Supernet:
    """Build the supernet a :class:`~metaae_edge.spec.SupernetConfig` describes."""
    cfg = (cfg or SupernetConfig()).validate()
    return SUPERNETS[cfg.backbone](cfg)


def create_compact(spec: ArchSpec) -> CompactAE | CompactConvAE:
    """A freshly initialised compact network for ``spec`` (``mlp`` or ``conv``)."""
    return COMPACT[spec.validate().backbone](spec)


def discretize(
    supernet: Supernet,
    input_shape: int | tuple[int, ...],
    alpha: dict[str, torch.Tensor] | None = None,
    output_activation: str = "identity",
) -> ArchSpec:
    """Freeze the architecture (argmax of every choice) for one sample's shape.

    ``input_shape`` is the feature count ``D`` (mlp) or ``(C, H, W)`` (conv).
    """
    if isinstance(supernet, ConvSupernet):
        return discretize_conv(supernet, tuple(input_shape), alpha, output_activation)
    d = input_shape if isinstance(input_shape, int) else int(torch.tensor(input_shape).prod())
    return discretize_mlp(supernet, d, alpha, output_activation)


def extract(
    supernet: Supernet, spec: ArchSpec, params: dict[str, torch.Tensor] | None = None
) -> CompactAE | CompactConvAE:
    """Slice the sub-network ``spec`` out of ``supernet`` (optionally from ``params``)."""
    if isinstance(supernet, ConvSupernet):
        return extract_conv(supernet, spec, params)
    return extract_mlp(supernet, spec, params)
