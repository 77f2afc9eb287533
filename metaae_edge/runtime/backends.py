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

from ..errors import InputError
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

# TensorRT optimisation profile of image (conv) graphs, whose height and width are dynamic
# as well as the batch. Defaults: batch 1..IMAGE_MAX_BATCH, tuned for IMAGE_OPT_BATCH;
# height / width from one block of 2**stages pixels up to IMAGE_MAX_SIDE_FACTOR times the
# resolution the architecture was adapted at (at least IMAGE_MIN_MAX_SIDE pixels), tuned
# for the adapted resolution. TensorRT reserves activation memory for the largest shape
# (max batch x max pixels x the widest layer's channels), so the box is kept modest: 64
# images of 64x64 with 32 channels is 32 MiB per activation. Widen it with
# ``build-engine --max-hw`` / ``--max-batch``. A dense-bottleneck bundle (``spec.fixed_hw``)
# runs at its adapted H x W only: min = opt = max there, and only the batch varies.
IMAGE_MAX_BATCH = 64
IMAGE_OPT_BATCH = 16
IMAGE_MAX_SIDE_FACTOR = 4
IMAGE_MIN_MAX_SIDE = 64


def image_profile(spec: Any, *, min_hw: tuple[int, int] | None = None,
                  opt_hw: tuple[int, int] | None = None,
                  max_hw: tuple[int, int] | None = None) -> dict[str, tuple[int, int, int]]:
    """Per-sample (C, H, W) shapes at the min / opt / max points of an image profile.

    Args:
        spec: the conv :class:`~metaae_edge.spec.ArchSpec`.
        min_hw, opt_hw, max_hw: (H, W) overrides; each a multiple of ``2**stages``. A
            fixed-resolution spec (``spec.fixed_hw``) has one point, its own (H, W), which
            the overrides may only repeat.

    Raises:
        InputError: a size is not a multiple of ``2**stages`` or min <= opt <= max fails;
            for a fixed-resolution spec, a size other than its own.
    """
    c, h, w = spec.input_shape
    m = 2 ** spec.stages
    fixed = spec.fixed_hw
    if fixed is not None:  # static H / W in the graph: a profile over the batch only
        for name, hw in (("min", min_hw), ("opt", opt_hw), ("max", max_hw)):
            if hw is not None and tuple(int(v) for v in hw) != tuple(fixed):
                size = "x".join(map(str, hw))
                raise InputError(f"this bundle runs at {h}x{w} only (dense code); profile "
                                 f"{name} size {size} must be {h}x{w} or left out")
        return {"min": (c, h, w), "opt": (c, h, w), "max": (c, h, w)}

    def up(v: int) -> int:
        return -(-v // m) * m

    lo = tuple(min_hw or (m, m))
    opt = tuple(opt_hw or (h, w))
    hi = tuple(max_hw or (up(max(IMAGE_MAX_SIDE_FACTOR * h, IMAGE_MIN_MAX_SIDE)),
                          up(max(IMAGE_MAX_SIDE_FACTOR * w, IMAGE_MIN_MAX_SIDE))))
    for name, hw in (("min", lo), ("opt", opt), ("max", hi)):
        if len(hw) != 2 or any(int(v) < m or int(v) % m for v in hw):
            raise InputError(f"profile {name} size {hw} must be two positive multiples of {m} "
                             f"(this image bundle has {spec.stages} down-sampling stages)")
    if not all(a <= b <= d for a, b, d in zip(lo, opt, hi)):
        raise InputError(f"profile sizes must satisfy min <= opt <= max per side, got "
                         f"{lo} / {opt} / {hi}")
    return {"min": (c, *map(int, lo)), "opt": (c, *map(int, opt)), "max": (c, *map(int, hi))}


def latent_profile(spec: Any, profile: dict[str, tuple[int, int, int]]
                   ) -> dict[str, tuple[int, ...]]:
    """The decoder's (L, h, w) profile matching an image profile (sizes / 2**stages); the
    (dense_latent,) code at every point for a fixed-resolution (dense-bottleneck) spec."""
    if spec.fixed_hw is not None:
        return {k: (spec.dense_latent,) for k in profile}
    m = 2 ** spec.stages
    return {k: (spec.latent_dim, v[1] // m, v[2] // m) for k, v in profile.items()}


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
