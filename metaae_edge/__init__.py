"""metaae-edge: meta-learned, architecture-adaptive autoencoders for edge devices.

The top-level package stays import-light (no torch): the torch-free runtime lives in
:mod:`metaae_edge.runtime`; training code under :mod:`metaae_edge.space`,
:mod:`metaae_edge.meta` and :mod:`metaae_edge.adapt` imports torch when used.
"""

from .errors import (
    BackendUnavailableError,
    BundleError,
    CheckpointError,
    DataError,
    ExportError,
    InputError,
    MetaAEError,
    ParityError,
    SpecError,
)
from .spec import ArchSpec, LayerSpec, SupernetConfig

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "ArchSpec",
    "LayerSpec",
    "SupernetConfig",
    "MetaAEError",
    "SpecError",
    "DataError",
    "CheckpointError",
    "BundleError",
    "BackendUnavailableError",
    "ExportError",
    "ParityError",
    "InputError",
]
