"""One IO contract per model kind, derived once from an :class:`~metaae_edge.spec.ArchSpec`.

Torch-free. :func:`contract_for` is the one place that looks at ``backbone`` and
``dense_latent`` to pick the kind; everything else asks the contract (input checks, latent
shapes, the manifest's input / outputs, graphs and axes, the TensorRT profile, sizes,
``describe()``, the reference score maths).

Adding a model kind: write a module with an :class:`IOContract` subclass (its
``matches(spec)`` says which specs it serves) and :func:`register_contract` it here.
"""

from __future__ import annotations

from functools import lru_cache

from ..errors import SpecError
from ..spec import BACKBONES, ArchSpec
from .base import ERROR_MAP_DEFINITION, GRAPHS, IOContract, ProfileBox
from .denoise import DenoiserContract
from .fixed import FixedImageContract
from .image import CONV_DIM_NAMES, CONV_GRAPHS, IMAGE_SCORE_DEFINITION, ImageContract
from .transform import TransformContract
from .vector import VECTOR_SCORE_DEFINITION, VectorContract

__all__ = ["CONTRACTS", "CONV_DIM_NAMES", "CONV_GRAPHS", "ERROR_MAP_DEFINITION", "GRAPHS",
           "SCORE_DEFINITION", "FixedImageContract", "IOContract", "ImageContract",
           "ProfileBox", "VectorContract", "contract_class", "contract_for",
           "register_contract"]

#: The registered contracts, asked in order (the first whose ``matches`` is true wins).
CONTRACTS: list[type[IOContract]] = []
#: The manifest / metadata text of the ``score`` output, per backbone.
SCORE_DEFINITION = {"mlp": VECTOR_SCORE_DEFINITION, "conv": IMAGE_SCORE_DEFINITION}


def register_contract(cls: type[IOContract], *, first: bool = False) -> type[IOContract]:
    """Add a contract class to the registry (``first``: ask it before the others)."""
    if cls not in CONTRACTS:
        CONTRACTS.insert(0, cls) if first else CONTRACTS.append(cls)
    _cached.cache_clear()
    return cls


def contract_class(spec: ArchSpec) -> type[IOContract]:
    """The contract class serving ``spec`` (``spec`` need not be valid yet).

    Raises:
        SpecError: no registered contract takes the spec's backbone.
    """
    for cls in CONTRACTS:
        if cls.matches(spec):
            return cls
    raise SpecError(f"backbone must be one of {', '.join(BACKBONES)}, got {spec.backbone!r}")


@lru_cache(maxsize=512)
def _cached(spec: ArchSpec) -> IOContract:
    return contract_class(spec)(spec)


def contract_for(spec: ArchSpec) -> IOContract:
    """The IO contract of a (valid) ``spec``; one shared instance per spec."""
    try:
        return _cached(spec)
    except TypeError:  # an unhashable (not yet validated) spec: build one uncached
        return contract_class(spec)(spec)


for _cls in (FixedImageContract, ImageContract, VectorContract):
    register_contract(_cls)
register_contract(DenoiserContract)
register_contract(TransformContract)  # the block transform codec (runtime/codec.py)
