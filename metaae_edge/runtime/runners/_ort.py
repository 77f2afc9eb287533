"""What the three onnxruntime backends share: one ``InferenceSession`` per graph, opened on
one execution provider, with onnxruntime's silent GPU-to-CPU fallback refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...errors import BackendUnavailableError, BundleError
from ...optional import require
from .base import SessionConfig

__all__ = ["OrtRunner", "ort_providers", "provider_missing"]


def ort_providers() -> list[str]:
    """Execution providers this onnxruntime build registers ([] without onnxruntime)."""
    try:
        ort = require("onnxruntime", "metaae-edge[cpu]")
    except ImportError:
        return []
    return list(ort.get_available_providers())


def provider_missing(provider: str, extra: str) -> Callable[[], str | None]:
    """A backend probe: why ``provider`` is not usable here (None: it is registered)."""
    def probe() -> str | None:
        if provider in ort_providers():
            return None
        return f"onnxruntime's {provider} is not available (pip install '{extra}')"
    return probe


def _available() -> str:
    from . import available_backends

    return f"backends available here: {', '.join(available_backends()) or 'none'}"


class OrtRunner:
    """One onnxruntime session for one graph; ``run`` is safe to call from many threads.

    Subclasses set the backend name, provider and extra, and build the provider list.
    Input and output names are read once here so the per-call path is a bare
    ``session.run``.
    """

    backend: ClassVar[str] = "ort-cpu"
    provider: ClassVar[str] = "CPUExecutionProvider"
    extra: ClassVar[str] = "metaae-edge[cpu]"
    io_binding: bool = False

    #: ``run(outputs, feeds) -> arrays``; ``outputs=None`` returns every output in graph
    #: order. Bound in ``__init__`` to the backend's fastest path (no wrapper frame).
    run: Callable[[list[str] | None, dict[str, np.ndarray]], list[np.ndarray]]

    def __init__(self, path: Path, config: SessionConfig,
                 profile: tuple[str, Any] | None = None):
        ort = require("onnxruntime", self.extra, hint=_available)
        if self.provider not in ort.get_available_providers():
            raise BackendUnavailableError(
                f"backend {self.backend} needs onnxruntime's {self.provider}, which this "
                f"onnxruntime build lacks; install pip install '{self.extra}' ({_available()})"
            )
        self.path = Path(path)
        self._profile = profile
        self.session = self._open(ort, config)
        used = self.session.get_providers()
        # onnxruntime silently falls back to CPU when a GPU provider fails to initialise;
        # a user who asked for a GPU backend must hear about it.
        if not used or used[0] != self.provider:
            raise BackendUnavailableError(
                f"backend {self.backend}: {self.provider} failed to initialise (CUDA / cuDNN / "
                f"TensorRT libraries missing or no GPU?); onnxruntime fell back to "
                f"{', '.join(used)}"
            )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.run = self._bind_run()

    def _open(self, ort: Any, config: SessionConfig) -> Any:
        try:
            return ort.InferenceSession(str(self.path),
                                        sess_options=config.session_options(ort),
                                        providers=self.providers(config))
        except Exception as exc:  # onnxruntime raises its own exception types
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if self.backend == "ort-cpu":  # the CPU provider always exists: the graph is bad
                raise BundleError(f"onnxruntime could not load {self.path}: {why}; the graph "
                                  "is corrupt or not ONNX, re-export the bundle") from None
            raise BackendUnavailableError(
                f"backend {self.backend} could not open {self.path.name}: {why}") from None

    def providers(self, config: SessionConfig) -> list[Any]:
        """The provider list handed to onnxruntime (the wanted one first)."""
        return ["CPUExecutionProvider"]

    def _bind_run(self) -> Callable[..., list[np.ndarray]]:
        # The bound ``session.run`` itself: no wrapper frame on the per-call path.
        return self.session.run

    def close(self) -> None:
        """Drop the session (onnxruntime frees it when the last reference goes)."""
        self.__dict__.pop("session", None)
