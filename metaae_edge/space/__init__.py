"""Search spaces: torch supernets, discretisation and sub-network extraction.

Every supernet has the same shape: ``forward(x, probs)``, ``alpha()``,
``check_input_shape``, ``constrain_alpha`` and ``resource_cost``; :func:`discretize` and
:func:`extract` dispatch on the supernet's backbone, :func:`create_compact` on the spec's.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import DataError
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
    "expected_latent_size",
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
    if isinstance(supernet, ConvSupernet):
        return discretize_conv(supernet, tuple(input_shape), alpha, output_activation,
                               latent_budget, bottleneck)
    if bottleneck not in (None, "spatial"):
        raise DataError("the mlp search space has no dense bottleneck choice")
    d = input_shape if isinstance(input_shape, int) else int(torch.tensor(input_shape).prod())
    if latent_budget:
        a = dict(alpha or supernet.alpha())
        fits = [i for i, c in enumerate(supernet.cfg.latent_choices) if c <= latent_budget]
        if not fits:
            raise DataError(f"no latent size fits a budget of {latent_budget:g} values; the "
                            f"smallest is {min(supernet.cfg.latent_choices)}")
        # spend it: the largest feasible size (measured on the shipped MLP checkpoints at
        # 3 and 6 bytes: the same or marginally lower query MSE than the most likely one,
        # which the budget hinge already pushes to the largest in most tasks)
        best = max(fits, key=lambda i: supernet.cfg.latent_choices[i])
        lat = a["latent"].detach()
        a["latent"] = torch.full_like(lat, -1e4).index_fill_(-1, torch.tensor(best), 0.0)
        alpha = a
    return discretize_mlp(supernet, d, alpha, output_activation)


def expected_latent_size(supernet: Supernet, probs: dict[str, torch.Tensor],
                         x_shape: tuple[int, ...]) -> torch.Tensor:
    """Differentiable expected latent values per sample (int8 bytes) of a batch's shape."""
    if isinstance(supernet, ConvSupernet):
        return supernet.expected_latent_size(probs, x_shape)
    lats = torch.tensor(supernet.cfg.latent_choices, dtype=torch.float32,
                        device=probs["latent"].device)
    return probs["latent"] @ lats


def extract(
    supernet: Supernet, spec: ArchSpec, params: dict[str, torch.Tensor] | None = None,
    basis: torch.Tensor | None = None,
) -> CompactAE | CompactConvAE:
    """Slice the sub-network ``spec`` out of ``supernet`` (optionally from ``params``).

    ``basis``: the task's principal directions, for a supernet with a linear bypass.
    """
    if isinstance(supernet, ConvSupernet):
        return extract_conv(supernet, spec, params, basis)
    return extract_mlp(supernet, spec, params, basis)
