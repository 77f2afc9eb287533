"""Inference backends behind one :class:`Runner` protocol, one module per backend.

Backends, fastest first (the order ``auto`` tries):

* ``tensorrt``  native TensorRT engine (needs an engine built for this GPU in the bundle);
  :mod:`.tensorrt`
* ``ort-trt``   onnxruntime TensorrtExecutionProvider, engines cached on disk; :mod:`.ort_trt`
* ``ort-cuda``  onnxruntime CUDAExecutionProvider, inputs/outputs through IOBinding;
  :mod:`.ort_cuda`
* ``ort-cpu``   onnxruntime CPUExecutionProvider; :mod:`.ort_cpu`

Adding a backend is one module that builds a :class:`Runner` and calls
:func:`register_backend`, plus its import below. Torch-free; onnxruntime / tensorrt are
imported only when a runner is opened (or a probe asks whether they are installed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import BackendUnavailableError, InputError
from ..manifest import PRECISIONS
from . import ort_cpu, ort_cuda, ort_trt, tensorrt  # noqa: F401  (each registers itself)
from ._ort import OrtRunner
from .base import (
    OPTIMIZATION_LEVELS,
    Backend,
    Runner,
    SessionConfig,
    get_backend,
    register_backend,
    registered_backends,
)
from .ort_trt import trt_profile_options
from .tensorrt import tensorrt_unavailable_reason

__all__ = [
    "BACKENDS",
    "OPTIMIZATION_LEVELS",
    "Backend",
    "OrtRunner",
    "Runner",
    "SessionConfig",
    "available_backends",
    "check_load_options",
    "create_runner",
    "get_backend",
    "open_fastest",
    "register_backend",
    "registered_backends",
    "tensorrt_unavailable_reason",
    "trt_profile_options",
]

#: Every built-in backend name, fastest first (the order ``auto`` tries them in).
BACKENDS: tuple[str, ...] = tuple(b.name for b in registered_backends())


def available_backends() -> list[str]:
    """Backends whose software is installed here, fastest first.

    Listing is a cheap probe (installed packages and registered execution providers;
    for ``tensorrt`` also libcudart and a visible GPU); a listed GPU backend can still
    fail to start, e.g. when CUDA libraries are missing, which :func:`create_runner`
    reports.
    """
    return [b.name for b in registered_backends() if b.unavailable() is None]


def create_runner(backend: str, path: Path, config: SessionConfig,
                  profile: tuple[str, Any] | None = None, bundle: Any = None) -> Runner:
    """Open ``path`` with one concrete backend (not ``auto``).

    Args:
        backend: a registered backend name (see :data:`BACKENDS`).
        path: the ONNX graph.
        config: session options.
        profile: (input name, feature width or image profile) for the TensorRT
            optimisation profile.
        bundle: the loaded bundle (``tensorrt`` looks for its engine there).

    Raises:
        BackendUnavailableError: unknown backend, or it cannot start here (one line).
        BundleError: the graph is not loadable (corrupt, not ONNX).
    """
    if backend == "auto":
        raise BackendUnavailableError("create_runner needs a concrete backend, not auto; "
                                      f"choose one of {', '.join(BACKENDS)}")
    return get_backend(backend).open(Path(path), config, profile, bundle)


def open_fastest(path: Path, config: SessionConfig, profile: tuple[str, Any] | None,
                 bundle: Any = None, *, device_id: int = 0) -> tuple[Runner, str, list[str]]:
    """The ``auto`` backend: open ``path`` on the fastest backend that starts here.

    Returns:
        (runner, backend name, notes): one note per faster backend that was skipped and
        why (also for ``tensorrt`` when the bundle carries engines it cannot use).

    Raises:
        BackendUnavailableError: no backend starts (the message carries every reason).
    """
    have = available_backends()
    notes: list[str] = []
    if "tensorrt" not in have and bundle is not None and (bundle.root / "engines").is_dir():
        # the bundle carries engines, so say why they are not used
        notes.append(f"tensorrt: {tensorrt_unavailable_reason(device_id)}")
    for name in have:  # fastest first
        try:
            return create_runner(name, path, config, profile, bundle=bundle), name, notes
        except BackendUnavailableError as exc:
            notes.append(f"{name}: {exc}")
    why = "; ".join(notes) if notes else "onnxruntime is not installed"
    raise BackendUnavailableError(
        f"no backend can run this bundle ({why}); install "
        "pip install 'metaae-edge[cpu]' (or [gpu] on a CUDA machine)")


def check_load_options(precision: str, optimization: str, backend: str,
                        **positive: int | None) -> None:
    """Refuse invalid :meth:`~metaae_edge.runtime.Runtime.load` options (one line each)
    before anything is opened.

    Raises:
        InputError: a bad precision, optimisation level or non-positive count.
        BackendUnavailableError: an unknown backend.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, "
                         f"got {precision!r}")
    if optimization not in OPTIMIZATION_LEVELS:
        raise InputError(f"optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}, "
                         f"got {optimization!r}")
    for name, value in positive.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if backend != "auto" and backend not in BACKENDS:
        raise BackendUnavailableError(
            f"unknown backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}")
