"""A tiny vector (MLP) bundle for the bundle-format, signing and other writer tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from metaae_edge.exporters.bundle import write_bundle
from metaae_edge.space.compact import CompactAE
from metaae_edge.spec import ArchSpec, LayerSpec
from metaae_edge.tasks.base import Normalizer

D = 10
SPEC = ArchSpec(input_shape=(D,), encoder=(LayerSpec(8, "relu"),), latent_dim=3,
                decoder=(LayerSpec(8, "tanh"),))


def write_tiny_bundle(out: Path, reports: dict[str, Any] | None = None, **kw: Any) -> Path:
    """An anomaly bundle of an untrained D -> 8 -> [3] -> 8 -> D net (threshold 1.0)."""
    torch.manual_seed(0)
    norm = Normalizer(np.zeros(D, np.float32), np.ones(D, np.float32))
    ref = np.random.default_rng(0).normal(size=(64, D)).astype(np.float32)
    return write_bundle(out, model=CompactAE(SPEC).eval(), spec=SPEC, normalizer=norm,
                        task_summary={"name": "t"}, objective="anomaly", reference=ref,
                        threshold={"value": 1.0, "fpr": 0.05, "method": "quantile"},
                        reports={} if reports is None else reports, seed=0, **kw)
