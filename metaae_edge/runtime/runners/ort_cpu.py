"""The ``ort-cpu`` backend: onnxruntime's CPUExecutionProvider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._ort import OrtRunner, provider_missing
from .base import Backend, SessionConfig, register_backend

__all__ = ["OrtCpuRunner", "BACKEND"]


class OrtCpuRunner(OrtRunner):
    """A graph on onnxruntime's CPU provider (``run`` is the bare ``session.run``)."""

    backend = "ort-cpu"
    provider = "CPUExecutionProvider"
    extra = "metaae-edge[cpu]"


def _open(path: Path, config: SessionConfig, profile: tuple[str, Any] | None,
          bundle: Any) -> OrtCpuRunner:
    return OrtCpuRunner(path, config, profile)


BACKEND = register_backend(Backend(
    name="ort-cpu", extra=OrtCpuRunner.extra, rank=30,
    unavailable=provider_missing(OrtCpuRunner.provider, OrtCpuRunner.extra), open=_open))
