"""Inference backends (compatibility module) and the image optimisation profiles.

The backends themselves live in :mod:`metaae_edge.runtime.runners`: one :class:`Runner`
protocol, one module per backend (ORT CPU / CUDA / TensorRT EP, native TensorRT) and one
registry; this module re-exports their names so ``from metaae_edge.runtime.backends import
create_runner`` keeps working. Torch-free. onnxruntime / tensorrt are imported lazily; a
missing one raises :class:`BackendUnavailableError` naming the pip extra to install and the
backends that *are* available here.

Backends, fastest first (the order ``auto`` tries):

* ``tensorrt``  native TensorRT engine (needs an engine built for this GPU in the bundle)
* ``ort-trt``   onnxruntime TensorrtExecutionProvider, engines cached on disk
* ``ort-cuda``  onnxruntime CUDAExecutionProvider, inputs/outputs through IOBinding
* ``ort-cpu``   onnxruntime CPUExecutionProvider
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ..contracts import contract_for
from ..contracts.image import (  # noqa: F401  (re-exported: the TensorRT profile defaults)
    IMAGE_MAX_BATCH,
    IMAGE_MAX_SIDE_FACTOR,
    IMAGE_MIN_MAX_SIDE,
    IMAGE_OPT_BATCH,
)
from ..errors import InputError  # noqa: F401  (re-exported)
from ..optional import require as _require

__all__ = [
    "BACKENDS",
    "IMAGE_MAX_BATCH",
    "IMAGE_OPT_BATCH",
    "image_profile",
    "latent_profile",
    "OPTIMIZATION_LEVELS",
    "Runner",
    "SessionConfig",
    "OrtRunner",
    "require",
    "available_backends",
    "tensorrt_unavailable_reason",
    "trt_profile_options",
    "create_runner",
]

# The TensorRT profile box of image graphs lives with the image contract
# (metaae_edge.contracts.image); these names are kept for the exporters and users.


def image_profile(spec: Any, *, min_hw: tuple[int, int] | None = None,
                  opt_hw: tuple[int, int] | None = None,
                  max_hw: tuple[int, int] | None = None) -> dict[str, tuple[int, int, int]]:
    """Per-sample (C, H, W) shapes at the min / opt / max points of an image profile: the
    spec's contract's :meth:`~metaae_edge.contracts.IOContract.input_profile`.

    Raises:
        InputError: a size is not a multiple of ``2**stages`` or min <= opt <= max fails;
            for a fixed-resolution spec, a size other than its own.
    """
    return contract_for(spec).input_profile(min_hw=min_hw, opt_hw=opt_hw, max_hw=max_hw)


def latent_profile(spec: Any, profile: dict[str, tuple[int, int, int]]
                   ) -> dict[str, tuple[int, ...]]:
    """The decoder's profile matching an image profile (the contract's ``latent_profile``)."""
    return contract_for(spec).latent_profile(profile)


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`BackendUnavailableError` naming the pip extra
    and the backends available here (:func:`metaae_edge.optional.require`)."""
    return _require(module, extra, hint=lambda: "backends available here: "
                    + (", ".join(available_backends()) or "none"))


# Imported last: the runners read the image-profile constants above lazily.
from .runners import (  # noqa: E402
    BACKENDS,
    OPTIMIZATION_LEVELS,
    OrtRunner,
    Runner,
    SessionConfig,
    available_backends,
    create_runner,
    tensorrt_unavailable_reason,
    trt_profile_options,
)
