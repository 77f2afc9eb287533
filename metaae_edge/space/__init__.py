"""Search spaces: torch supernets, discretisation and sub-network extraction."""

from ..spec import SupernetConfig
from .compact import CompactAE
from .mlp import MLPSupernet, arch_probs, discretize, extract

__all__ = ["CompactAE", "MLPSupernet", "arch_probs", "create_supernet", "discretize", "extract"]

#: backbone name (``SupernetConfig.backbone``) -> supernet class; ``conv`` joins later.
SUPERNETS = {"mlp": MLPSupernet}


def create_supernet(cfg: SupernetConfig | None = None) -> MLPSupernet:
    """Build the supernet a :class:`~metaae_edge.spec.SupernetConfig` describes."""
    cfg = (cfg or SupernetConfig()).validate()
    return SUPERNETS[cfg.backbone](cfg)
