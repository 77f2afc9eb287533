"""Inference backends: one small loader + runner per backend (Polygraphy's shape).

Torch-free. onnxruntime / tensorrt are imported lazily; a missing one raises
:class:`BackendUnavailableError` naming the pip extra to install and the backends that *are*
available here.

Backends, fastest first (the order ``auto`` tries):

* ``tensorrt``  native TensorRT engine (needs an engine built for this GPU in the bundle)
* ``ort-trt``   onnxruntime TensorrtExecutionProvider, engines cached on disk
* ``ort-cuda``  onnxruntime CUDAExecutionProvider, inputs/outputs through IOBinding
* ``ort-cpu``   onnxruntime CPUExecutionProvider
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..contracts import contract_for
from ..contracts.image import (  # noqa: F401  (re-exported: the TensorRT profile defaults)
    IMAGE_MAX_BATCH,
    IMAGE_MAX_SIDE_FACTOR,
    IMAGE_MIN_MAX_SIDE,
    IMAGE_OPT_BATCH,
)
from ..errors import BackendUnavailableError, BundleError, InputError

__all__ = [
    "BACKENDS",
    "IMAGE_MAX_BATCH",
    "IMAGE_OPT_BATCH",
    "image_profile",
    "latent_profile",
    "OPTIMIZATION_LEVELS",
    "SessionConfig",
    "OrtRunner",
    "require",
    "available_backends",
    "tensorrt_unavailable_reason",
    "create_runner",
]

#: Every backend name, fastest first (the order ``auto`` tries them in).
BACKENDS: tuple[str, ...] = ("tensorrt", "ort-trt", "ort-cuda", "ort-cpu")
_EXTRA = {
    "ort-cpu": "metaae-edge[cpu]",
    "ort-cuda": "metaae-edge[gpu]",
    "ort-trt": "metaae-edge[gpu,tensorrt]",
    "tensorrt": "metaae-edge[tensorrt]",
}
_PROVIDER = {
    "ort-cpu": "CPUExecutionProvider",
    "ort-cuda": "CUDAExecutionProvider",
    "ort-trt": "TensorrtExecutionProvider",
}
OPTIMIZATION_LEVELS: tuple[str, ...] = ("disable", "basic", "extended", "all")

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
    """Import ``module`` or raise :class:`BackendUnavailableError` naming the pip extra.

    Args:
        module: Import name, e.g. ``"onnxruntime"``.
        extra: What to install, e.g. ``"metaae-edge[cpu]"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        have = ", ".join(available_backends()) or "none"
        raise BackendUnavailableError(
            f"{module} is not installed ({exc}); install it with pip install '{extra}' "
            f"(backends available here: {have})"
        ) from None


def _ort_providers() -> list[str]:
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        return []
    return list(ort.get_available_providers())


def tensorrt_unavailable_reason(device_id: int = 0) -> str | None:
    """Why the native ``tensorrt`` backend cannot run here (None: it can).

    Cheap and side-effect free apart from loading libcudart once: TensorRT must be
    importable, libcudart loadable and a CUDA GPU visible.
    """
    if importlib.util.find_spec("tensorrt") is None:
        return f"TensorRT is not installed (pip install '{_EXTRA['tensorrt']}')"
    from . import cuda

    try:
        cuda.gpu_info(device_id)
    except BackendUnavailableError as exc:
        return str(exc)
    except Exception as exc:  # a broken driver answers with a CUDA error
        return f"CUDA is not usable here ({exc})"
    return None


def available_backends() -> list[str]:
    """Backends whose software is installed here, fastest first.

    Listing is a cheap probe (installed packages and registered execution providers;
    for ``tensorrt`` also libcudart and a visible GPU);
    a listed GPU backend can still fail to start, e.g. when CUDA libraries are missing,
    which :func:`create_runner` reports.
    """
    providers = _ort_providers()
    out = []
    if tensorrt_unavailable_reason() is None:
        out.append("tensorrt")
    for name in ("ort-trt", "ort-cuda", "ort-cpu"):
        if _PROVIDER[name] in providers:
            out.append(name)
    return out


@dataclass(frozen=True)
class SessionConfig:
    """Session options shared by every graph a Runtime opens.

    Attributes:
        threads: intra-op threads (None or 0: onnxruntime's default, one per core).
        inter_threads: inter-op threads (None: default).
        optimization: graph optimisation level: disable | basic | extended | all.
        device_id: CUDA device for the GPU backends.
        max_batch: largest batch a GPU engine is built for (TensorRT profile).
        cache_dir: where ort-trt caches engines (default: ~/.cache/metaae-edge/trt).
    """

    threads: int | None = None
    inter_threads: int | None = None
    optimization: str = "all"
    device_id: int = 0
    max_batch: int | None = None
    cache_dir: str | None = None

    def session_options(self, ort: ModuleType) -> Any:
        level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        if self.optimization not in level:
            raise InputError(
                f"optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}, "
                f"got {self.optimization!r}"
            )
        so = ort.SessionOptions()
        so.graph_optimization_level = level[self.optimization]
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
        if self.inter_threads:
            so.inter_op_num_threads = int(self.inter_threads)
        so.log_severity_level = 3  # errors only: ORT warnings are noise for a CLI user
        return so


class OrtRunner:
    """One onnxruntime session for one graph; ``run`` is safe to call from many threads.

    Input and output names are read once here so the per-call path is a bare
    ``session.run``.
    """

    #: ``run(outputs, feeds) -> arrays``; ``outputs=None`` returns every output in graph
    #: order. Bound in ``__init__`` to the backend's fastest path (no wrapper frame).
    run: Callable[[list[str] | None, dict[str, np.ndarray]], list[np.ndarray]]

    def __init__(
        self, path: Path, backend: str, config: SessionConfig,
        profile: tuple[str, Any] | None = None,
    ):
        ort = require("onnxruntime", _EXTRA[backend])
        provider = _PROVIDER[backend]
        if provider not in ort.get_available_providers():
            raise BackendUnavailableError(
                f"backend {backend} needs onnxruntime's {provider}, which this onnxruntime "
                f"build lacks; install pip install '{_EXTRA[backend]}' "
                f"(backends available here: {', '.join(available_backends()) or 'none'})"
            )
        self.backend = backend
        self.path = Path(path)
        self._profile = profile
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=config.session_options(ort),
                providers=self._providers(backend, config),
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if backend == "ort-cpu":  # the CPU provider always exists: the graph is bad
                raise BundleError(f"onnxruntime could not load {self.path}: {why}; the graph "
                                  "is corrupt or not ONNX, re-export the bundle") from None
            raise BackendUnavailableError(
                f"backend {backend} could not open {self.path.name}: {why}") from None
        used = self.session.get_providers()
        # onnxruntime silently falls back to CPU when a GPU provider fails to initialise;
        # a user who asked for a GPU backend must hear about it.
        if not used or used[0] != provider:
            raise BackendUnavailableError(
                f"backend {backend}: {provider} failed to initialise (CUDA / cuDNN / TensorRT "
                f"libraries missing or no GPU?); onnxruntime fell back to {', '.join(used)}"
            )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        # The per-call path: the bound ``session.run`` itself on CPU (no wrapper frame),
        # IOBinding on CUDA.
        self.run = self._run_iobinding if backend == "ort-cuda" else self.session.run

    def _providers(self, backend: str, config: SessionConfig) -> list[Any]:
        if backend == "ort-cpu":
            return ["CPUExecutionProvider"]
        cuda = ("CUDAExecutionProvider", {"device_id": config.device_id})
        if backend == "ort-cuda":
            return [cuda, "CPUExecutionProvider"]
        return [("TensorrtExecutionProvider", self._trt_options(config)), cuda,
                "CPUExecutionProvider"]

    def _trt_options(self, config: SessionConfig) -> dict[str, Any]:
        # One cache folder per graph content, so a changed bundle never reuses a stale engine.
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]
        root = Path(config.cache_dir or os.environ.get("METAAE_EDGE_CACHE")
                    or Path.home() / ".cache" / "metaae-edge" / "trt")
        cache = root / digest
        cache.mkdir(parents=True, exist_ok=True)
        opts: dict[str, Any] = {
            "device_id": config.device_id,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
        }
        if self._profile is not None:
            # A [1, max_batch] profile for the dynamic batch axis (and, for images, height
            # and width); without one TensorRT rebuilds the engine whenever a larger input
            # than seen before arrives.
            name, width = self._profile
            default = IMAGE_MAX_BATCH if isinstance(width, dict) else 4096
            opts.update(trt_profile_options(name, width, config.max_batch or default))
        return opts

    def _run_iobinding(self, outputs: list[str] | None,
                       feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        # Copy the input to the GPU once and let ORT allocate outputs there; a fresh
        # binding per call keeps concurrent calls independent.
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        for name in outputs or self.output_names:
            binding.bind_output(name, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


def trt_profile_options(input_name: str, width: int | dict[str, tuple[int, ...]],
                        max_batch: int) -> dict[str, str]:
    """TensorRT EP optimisation-profile options for a [batch, width] input, or for an
    image input with ``width`` an :func:`image_profile` (per-sample min / opt / max)."""
    if isinstance(width, dict):
        def dims(key: str) -> str:
            return "x".join(str(v) for v in width[key])
        opt = min(max_batch, IMAGE_OPT_BATCH)
        return {
            "trt_profile_min_shapes": f"{input_name}:1x{dims('min')}",
            "trt_profile_opt_shapes": f"{input_name}:{opt}x{dims('opt')}",
            "trt_profile_max_shapes": f"{input_name}:{max_batch}x{dims('max')}",
        }
    opt = min(max_batch, 64)
    return {
        "trt_profile_min_shapes": f"{input_name}:1x{width}",
        "trt_profile_opt_shapes": f"{input_name}:{opt}x{width}",
        "trt_profile_max_shapes": f"{input_name}:{max_batch}x{width}",
    }


def _native_tensorrt(path: Path, config: SessionConfig, bundle: Any) -> Any:
    require("tensorrt", _EXTRA["tensorrt"])
    from .trt import TensorRTRunner

    if bundle is None:  # engines live in the bundle: find it from the graph's folder
        from .bundle import load_bundle

        bundle = load_bundle(Path(path).parent, verify=False)
    # METAAE_EDGE_TRT_CUDA_GRAPH=1 replays a captured execute_async_v3 for repeated batch
    # sizes; off by default as it pays off only for tiny, latency-bound calls.
    graph = os.environ.get("METAAE_EDGE_TRT_CUDA_GRAPH", "") not in ("", "0")
    return TensorRTRunner(Path(path), bundle, device_id=config.device_id, cuda_graph=graph)


def create_runner(
    backend: str, path: Path, config: SessionConfig,
    profile: tuple[str, Any] | None = None,
    bundle: Any = None,
) -> OrtRunner:
    """Open ``path`` with one concrete backend (not ``auto``).

    Args:
        backend: one of :data:`BACKENDS`.
        path: the ONNX graph.
        config: session options.
        profile: (input name, feature width or :func:`image_profile`) for the TensorRT
            optimisation profile.
        bundle: the loaded bundle (``tensorrt`` looks for its engine there).
    """
    if backend not in BACKENDS:
        raise BackendUnavailableError(
            f"unknown backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}"
        )
    if backend == "tensorrt":
        return _native_tensorrt(path, config, bundle)
    return OrtRunner(path, backend, config, profile)
