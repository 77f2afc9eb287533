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


def write_tiny_bundle(out: Path, reports: dict[str, Any] | None = None,
                      task_summary: dict[str, Any] | None = None, **kw: Any) -> Path:
    """An anomaly bundle of an untrained D -> 8 -> [3] -> 8 -> D net (threshold 1.0)."""
    torch.manual_seed(0)
    norm = Normalizer(np.zeros(D, np.float32), np.ones(D, np.float32))
    ref = np.random.default_rng(0).normal(size=(64, D)).astype(np.float32)
    return write_bundle(out, model=CompactAE(SPEC).eval(), spec=SPEC, normalizer=norm,
                        task_summary=task_summary or {"name": "t"}, objective="anomaly",
                        reference=ref,
                        threshold={"value": 1.0, "fpr": 0.05, "method": "quantile"},
                        reports={} if reports is None else reports, seed=0, **kw)


#: the child script of ``python_without``: score argv[2] with the bundle argv[1] into
#: argv[3], torch never imported (neither by loading nor by scoring)
SCORE_TORCH_FREE = """
import sys, numpy as np
from metaae_edge.runtime import Runtime
assert not loaded("torch")
rt = Runtime.load(sys.argv[1])
np.save(sys.argv[3], rt.score(np.load(sys.argv[2])))
assert not loaded("torch")
"""


def bump_series(n: int, c: int = 2, t: int = 40, seed: int = 0, width: float = 3.0,
                pad: int = 0) -> np.ndarray:
    """``n`` flattened ``c``-channel series of length ``t``: a bump of ``width`` at a
    random position on a slow wave, plus noise; ``pad`` samples of the row's own mean at
    both ends (so a shift by <= pad with that fill keeps the row's mean and variance)."""
    rng = np.random.default_rng(seed)
    tt = np.arange(t)
    pos = rng.uniform(0.3 * t, 0.7 * t, (n, 1, 1))
    x = np.exp(-0.5 * ((tt - pos) / width) ** 2) * rng.uniform(1, 2, (n, c, 1))
    x = x + 0.3 * np.sin(2 * np.pi * tt / t + rng.uniform(0, 1, (n, c, 1)))
    x = x + 0.05 * rng.standard_normal(x.shape) + np.arange(c)[None, :, None]
    if pad:
        m = x.mean(axis=2, keepdims=True)
        x = np.concatenate([np.repeat(m, pad, 2), x, np.repeat(m, pad, 2)], axis=2)
    return x.reshape(n, -1).astype(np.float32)


def assert_density_refused(densities, tmp_path: Path) -> None:
    """Each of ``densities`` (runtime.density.Density), written as density.npz, is
    refused on load with the one-line BundleError."""
    import pytest

    from metaae_edge.errors import BundleError
    from metaae_edge.runtime.density import Density

    for bad in densities:
        p = tmp_path / "d.npz"
        p.write_bytes(bad.to_bytes())
        with pytest.raises(BundleError, match="invalid latent density"):
            Density.load(p)
