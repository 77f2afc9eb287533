"""Torch-free inference on a bundle: ``Runtime.load(path).score(x)``.

Imports only the standard library, numpy, :mod:`metaae_edge.spec`,
:mod:`metaae_edge.errors` and (lazily) onnxruntime / tensorrt, so device software can
``pip install 'metaae-edge[cpu]'`` without torch.
"""

from __future__ import annotations

from .api import Runtime
from .backends import BACKENDS, available_backends
from .bundle import Bundle, BundleFile, load_bundle

__all__ = ["Runtime", "Bundle", "BundleFile", "load_bundle", "available_backends", "BACKENDS"]
