"""Search spaces: torch supernets, discretisation and sub-network extraction.

Every search space is a :class:`Supernet` subclass (``forward(x, probs)``, ``alpha()``,
``check_input_shape``, ``constrain_alpha``, ``resource_cost``, ``discretize``,
``extract``, ...) registered here under its backbone name together with the compact
network its architectures freeze into. Adding a space: write the subclass and its compact
network, then add one :func:`register_space` line below.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import SpecError
from ..spec import ArchSpec, SupernetConfig
from .base import ARCH_PREFIX, Supernet, alpha_of, arch_probs
from .compact import CompactAE
from .conv import CompactConvAE, ConvSupernet
from .denoise import CompactDenoiser, DenoiserSupernet
from .mlp import MLPSupernet
from .search import bottleneck_search, prefilter_search

__all__ = [
    "ARCH_PREFIX",
    "CompactAE",
    "CompactConvAE",
    "ConvSupernet",
    "MLPSupernet",
    "SearchSpace",
    "Supernet",
    "alpha_of",
    "arch_probs",
    "bottleneck_search",
    "create_compact",
    "create_supernet",
    "discretize",
    "expected_latent_size",
    "extract",
    "prefilter_search",
    "register_space",
    "registered_spaces",
]


@dataclass(frozen=True)
class SearchSpace:
    """One registered model kind: its supernet and the compact network it freezes into."""

    name: str
    supernet: type[Supernet]
    compact: type[nn.Module]


_SPACES: dict[str, SearchSpace] = {}


def register_space(name: str, supernet_cls: type[Supernet],
                   compact_cls: type[nn.Module]) -> SearchSpace:
    """Register a search space under a backbone name (``SupernetConfig.backbone`` and
    ``ArchSpec.backbone``); re-registering a name replaces it."""
    if not (isinstance(supernet_cls, type) and issubclass(supernet_cls, Supernet)):
        raise TypeError(f"{supernet_cls!r} is not a Supernet subclass")
    _SPACES[name] = entry = SearchSpace(name, supernet_cls, compact_cls)
    return entry


def registered_spaces() -> dict[str, SearchSpace]:
    """Backbone name -> :class:`SearchSpace`, in registration order."""
    return dict(_SPACES)


def _space(name: str) -> SearchSpace:
    try:
        return _SPACES[name]
    except KeyError:
        raise SpecError(f"unknown search space (backbone) {name!r}; registered: "
                        f"{', '.join(_SPACES)}") from None


register_space("mlp", MLPSupernet, CompactAE)
register_space("conv", ConvSupernet, CompactConvAE)
register_space("denoiser", DenoiserSupernet, CompactDenoiser)


def create_supernet(cfg: SupernetConfig | None = None) -> Supernet:
    """Build the supernet a :class:`~metaae_edge.spec.SupernetConfig` describes."""
    cfg = (cfg or SupernetConfig()).validate()
    return _space(cfg.backbone).supernet(cfg)


def create_compact(spec: ArchSpec) -> nn.Module:
    """A freshly initialised compact network for ``spec`` (its backbone's class)."""
    return _space(spec.validate().backbone).compact(spec)


def discretize(
    supernet: Supernet,
    input_shape: int | tuple[int, ...],
    alpha: dict[str, torch.Tensor] | None = None,
    output_activation: str = "identity",
    latent_budget: float = 0.0,
    bottleneck: str | None = None,
) -> ArchSpec:
    """Freeze the architecture (argmax of every choice) for one sample's shape.

    ``input_shape`` is the feature count ``D`` (mlp) or ``(C, H, W)`` (conv).
    ``latent_budget`` (> 0) caps the latent values per sample and the budget is spent: the
    largest latent size that fits (conv: the stage count and latent channels with the most
    latent values that fit, the larger joint logit among equals); :class:`DataError` if
    nothing fits. ``bottleneck`` (conv only): force a ``spatial`` latent or a ``dense``
    code (see :func:`~metaae_edge.space.conv.discretize_conv`).
    """
    return supernet.discretize(input_shape, alpha, output_activation, latent_budget,
                               bottleneck)


def expected_latent_size(supernet: Supernet, probs: dict[str, torch.Tensor],
                         x_shape: tuple[int, ...]) -> torch.Tensor:
    """Differentiable expected latent values per sample (int8 bytes) of a batch's shape."""
    return supernet.expected_latent_size(probs, x_shape)


def extract(
    supernet: Supernet, spec: ArchSpec, params: dict[str, torch.Tensor] | None = None,
    basis: torch.Tensor | None = None,
) -> nn.Module:
    """Slice the sub-network ``spec`` out of ``supernet`` (optionally from ``params``).

    ``basis``: the task's principal directions, for a supernet with a linear bypass.
    """
    return supernet.extract(spec, params, basis)
