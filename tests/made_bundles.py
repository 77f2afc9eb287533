"""Tiny bundles exported once per test session and shared by the modules that only read
them (copy before editing): an export costs seconds, a copy milliseconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

_MADE: dict[str, Path] = {}
#: the image bundle's architecture: 1 x 8 x 8, one stage (H and W multiples of 2)
IMG_SHAPE = (1, 8, 8)


def vector_bundle(tmp_path_factory: Any) -> Path:
    """vector_helpers' D=10 anomaly bundle (threshold 1.0)."""
    if "vector" not in _MADE:
        from vector_helpers import write_tiny_bundle

        _MADE["vector"] = write_tiny_bundle(tmp_path_factory.mktemp("made") / "vector")
    return _MADE["vector"]


def image_bundle(tmp_path_factory: Any) -> Path:
    """An untrained 1x8x8 conv reconstruct bundle (one stage)."""
    if "image" not in _MADE:
        import torch

        from metaae_edge.exporters.bundle import write_bundle
        from metaae_edge.space.conv import CompactConvAE
        from metaae_edge.spec import ArchSpec, LayerSpec
        from metaae_edge.tasks.base import Normalizer

        spec = ArchSpec(IMG_SHAPE, (LayerSpec(2, "relu", 3),), 2, (LayerSpec(2, "tanh", 3),),
                        backbone="conv")
        torch.manual_seed(0)
        x = np.random.default_rng(0).uniform(size=(8, *IMG_SHAPE)).astype(np.float32)
        _MADE["image"] = write_bundle(
            tmp_path_factory.mktemp("made") / "image", model=CompactConvAE(spec).eval(),
            spec=spec, normalizer=Normalizer.fit(x.reshape(len(x), -1), "global"),
            task_summary={"name": "t"}, objective="reconstruct", reference=x.reshape(8, -1),
            threshold=None, reports={}, seed=0)
    return _MADE["image"]
