"""The tiny untrained bundles ``run`` is tried on, and the one-line-error check, shared by
test_reader_run.py and test_hostile.py (through conftest's ``vec_bundle`` / ``img_bundle``
fixtures, each built from the requesting module's own ``VEC`` / ``IMG`` spec)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def one_line_error(code: int, err: str) -> str:
    """The one ``error: ...`` line of a user error (exit code 2); fails on anything else."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


def anomaly_bundle(out: Path, spec) -> Path:
    """An anomaly bundle of an untrained MLP of ``spec`` (identity normaliser, threshold
    1.0, 40 N(0, 1) reference rows)."""
    import torch

    from metaae_edge.exporters.bundle import write_bundle
    from metaae_edge.space.compact import CompactAE
    from metaae_edge.tasks.base import Normalizer

    d = spec.input_dim
    torch.manual_seed(0)
    norm = Normalizer(np.zeros(d, np.float32), np.ones(d, np.float32))
    ref = np.random.default_rng(0).normal(size=(40, d)).astype(np.float32)
    return write_bundle(out, model=CompactAE(spec).eval(), spec=spec, normalizer=norm,
                        task_summary={"name": "t"}, objective="anomaly", reference=ref,
                        reports={}, seed=0,
                        threshold={"value": 1.0, "fpr": 0.5, "method": "quantile"})


def conv_bundle(out: Path, spec) -> Path:
    """A reconstruct bundle of an untrained conv net of ``spec`` (1 x 8 x 8; 8 uniform
    reference images, a global normaliser fitted on them)."""
    import torch

    from metaae_edge.exporters.bundle import write_bundle
    from metaae_edge.space.conv import CompactConvAE
    from metaae_edge.tasks.base import Normalizer

    torch.manual_seed(0)
    x = np.random.default_rng(0).uniform(size=(8, *spec.input_shape)).astype(np.float32)
    norm = Normalizer.fit(x.reshape(len(x), -1), "global")
    return write_bundle(out, model=CompactConvAE(spec).eval(), spec=spec, normalizer=norm,
                        task_summary={"name": "t"}, objective="reconstruct",
                        reference=x.reshape(len(x), -1), threshold=None, reports={}, seed=0)
