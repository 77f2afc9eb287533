"""Search spaces: torch supernets, discretisation and sub-network extraction."""

from .compact import CompactAE
from .mlp import MLPSupernet, arch_probs, discretize, extract, supernet_param_names

__all__ = [
    "CompactAE",
    "MLPSupernet",
    "arch_probs",
    "create_supernet",
    "discretize",
    "extract",
    "supernet_param_names",
]


def create_supernet(cfg=None) -> MLPSupernet:
    """Build the supernet a :class:`~metaae_edge.spec.SupernetConfig` describes."""
    return MLPSupernet(cfg)
