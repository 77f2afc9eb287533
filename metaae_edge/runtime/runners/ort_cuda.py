"""The ``ort-cuda`` backend: onnxruntime's CUDAExecutionProvider, inputs and outputs through
IOBinding."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._ort import OrtRunner, provider_missing
from .base import Backend, SessionConfig, register_backend

__all__ = ["OrtCudaRunner", "BACKEND"]


class OrtCudaRunner(OrtRunner):
    """A graph on onnxruntime's CUDA provider; each call binds its own IOBinding."""

    backend = "ort-cuda"
    provider = "CUDAExecutionProvider"
    extra = "metaae-edge[gpu]"
    io_binding = True

    def providers(self, config: SessionConfig) -> list[Any]:
        return [("CUDAExecutionProvider", {"device_id": config.device_id}),
                "CPUExecutionProvider"]

    def _bind_run(self) -> Callable[..., list[np.ndarray]]:
        return self._run_iobinding

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


def _open(path: Path, config: SessionConfig, profile: tuple[str, Any] | None,
          bundle: Any) -> OrtCudaRunner:
    return OrtCudaRunner(path, config, profile)


BACKEND = register_backend(Backend(
    name="ort-cuda", extra=OrtCudaRunner.extra, rank=20,
    unavailable=provider_missing(OrtCudaRunner.provider, OrtCudaRunner.extra), open=_open))
