"""The ``ort-trt`` backend: onnxruntime's TensorrtExecutionProvider, engines cached on disk
per graph content, with an explicit optimisation profile."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ._ort import OrtRunner, provider_missing
from .base import Backend, SessionConfig, register_backend

__all__ = ["OrtTrtRunner", "trt_profile_options", "BACKEND"]

_FEATURE_MAX_BATCH = 4096
_FEATURE_OPT_BATCH = 64


def trt_profile_options(input_name: str, width: int | dict[str, tuple[int, ...]],
                        max_batch: int) -> dict[str, str]:
    """TensorRT EP optimisation-profile options for a [batch, width] input, or for an
    image input with ``width`` an :func:`~metaae_edge.runtime.backends.image_profile`
    (per-sample min / opt / max)."""
    from ..backends import IMAGE_OPT_BATCH

    if isinstance(width, dict):
        def dims(key: str) -> str:
            return "x".join(str(v) for v in width[key])
        opt = min(max_batch, IMAGE_OPT_BATCH)
        return {
            "trt_profile_min_shapes": f"{input_name}:1x{dims('min')}",
            "trt_profile_opt_shapes": f"{input_name}:{opt}x{dims('opt')}",
            "trt_profile_max_shapes": f"{input_name}:{max_batch}x{dims('max')}",
        }
    opt = min(max_batch, _FEATURE_OPT_BATCH)
    return {
        "trt_profile_min_shapes": f"{input_name}:1x{width}",
        "trt_profile_opt_shapes": f"{input_name}:{opt}x{width}",
        "trt_profile_max_shapes": f"{input_name}:{max_batch}x{width}",
    }


class OrtTrtRunner(OrtRunner):
    """A graph on onnxruntime's TensorRT provider (CUDA, then CPU, behind it for nodes
    TensorRT does not take)."""

    backend = "ort-trt"
    provider = "TensorrtExecutionProvider"
    extra = "metaae-edge[gpu,tensorrt]"

    def providers(self, config: SessionConfig) -> list[Any]:
        cuda = ("CUDAExecutionProvider", {"device_id": config.device_id})
        return [("TensorrtExecutionProvider", self._trt_options(config)), cuda,
                "CPUExecutionProvider"]

    def _trt_options(self, config: SessionConfig) -> dict[str, Any]:
        from ..backends import IMAGE_MAX_BATCH

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
            default = IMAGE_MAX_BATCH if isinstance(width, dict) else _FEATURE_MAX_BATCH
            opts.update(trt_profile_options(name, width, config.max_batch or default))
        return opts


def _open(path: Path, config: SessionConfig, profile: tuple[str, Any] | None,
          bundle: Any) -> OrtTrtRunner:
    return OrtTrtRunner(path, config, profile)


BACKEND = register_backend(Backend(
    name="ort-trt", extra=OrtTrtRunner.extra, rank=10,
    unavailable=provider_missing(OrtTrtRunner.provider, OrtTrtRunner.extra), open=_open))
