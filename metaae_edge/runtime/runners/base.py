"""The :class:`Runner` protocol every backend implements, its session options, and the
backend registry (Polygraphy's shape: one loader + runner module per backend).

Torch-free; nothing here imports onnxruntime or TensorRT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ...errors import BackendUnavailableError, InputError

__all__ = ["Runner", "SessionConfig", "Backend", "OPTIMIZATION_LEVELS", "register_backend",
           "get_backend", "registered_backends"]

OPTIMIZATION_LEVELS: tuple[str, ...] = ("disable", "basic", "extended", "all")


@runtime_checkable
class Runner(Protocol):
    """One opened graph (or engine) on one backend.

    ``run`` must be safe to call from several threads at once.

    Attributes:
        backend: the backend's registry name (``"ort-cpu"``...).
        path: the graph or engine file that was opened.
        input_names / output_names: tensor names, in graph (engine) order.
        io_binding: whether ``run`` keeps outputs on the device until copied out
            (onnxruntime IOBinding, TensorRT device buffers): a per-call device copy.
    """

    backend: str
    path: Path
    input_names: list[str]
    output_names: list[str]
    io_binding: bool

    def run(self, outputs: list[str] | None,
            feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the graph; ``outputs=None`` returns every output in graph order."""
        ...

    def close(self) -> None:
        """Release sessions and device memory (idempotent)."""
        ...


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
        """onnxruntime ``SessionOptions`` for these settings."""
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


#: ``open(path, config, profile, bundle) -> Runner``; ``profile`` is (input name, feature
#: width or per-sample image profile) for the TensorRT profiles, ``bundle`` the loaded
#: bundle (native TensorRT finds its engines there).
Opener = Callable[[Path, SessionConfig, "tuple[str, Any] | None", Any], Runner]


@dataclass(frozen=True)
class Backend:
    """One registered backend.

    Attributes:
        name: the ``--backend`` name.
        extra: the pip extra that installs its software.
        rank: lower is faster; ``auto`` tries backends in rank order.
        unavailable: a cheap probe: why it cannot run here (None: it can).
        open: builds a :class:`Runner` for one graph.
    """

    name: str
    extra: str
    rank: int
    unavailable: Callable[[], str | None]
    open: Opener


_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Add (or replace) a backend; adding one is one module plus this call."""
    _REGISTRY[backend.name] = backend
    return backend


def registered_backends() -> list[Backend]:
    """Every registered backend, fastest (lowest rank) first."""
    return sorted(_REGISTRY.values(), key=lambda b: b.rank)


def get_backend(name: str) -> Backend:
    """The backend called ``name``.

    Raises:
        BackendUnavailableError: no such backend (the message lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        names = ", ".join(b.name for b in registered_backends())
        raise BackendUnavailableError(
            f"unknown backend {name!r}; choose auto or one of {names}") from None
