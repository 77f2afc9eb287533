"""Memory of ``run`` and the Runtime on large inputs (issue 17 targets), in subprocesses:
``run --mode score`` on a 1,000,000 x 30 CSV peaks at <= 400 MB, ``Runtime.score`` on a
(1,000,000, 30) float32 array adds <= 300 MB, a 25-megapixel image runs tile-wise in
bounded memory. Slow (minutes: the CSV alone is 275 MB); ``scripts/run_memory.py`` prints
the same numbers for main and a branch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from metaae_edge.exporters.bundle import write_bundle  # noqa: E402
from metaae_edge.space.compact import CompactAE  # noqa: E402
from metaae_edge.space.conv import CompactConvAE  # noqa: E402
from metaae_edge.spec import ArchSpec, LayerSpec  # noqa: E402
from metaae_edge.tasks.base import Normalizer  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
N, D = 1_000_000, 30
_WRAP = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
         "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")


def _peak_mb(*argv: str) -> float:
    """Peak RSS (MB) of ``argv`` in a child of a wrapper that has no other child."""
    out = subprocess.run([sys.executable, "-c", _WRAP, *argv], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    rc, rss = out.stdout.split()[-2:]
    assert rc == "0", out.stderr[-2000:]
    return float(rss)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    work = tmp_path_factory.mktemp("mem")
    torch.manual_seed(0)
    spec = ArchSpec(input_shape=(D,), encoder=(LayerSpec(96, "hardswish"),), latent_dim=16,
                    decoder=(LayerSpec(96, "hardswish"),))
    rng = np.random.default_rng(0)
    bundle = write_bundle(work / "b", model=CompactAE(spec).eval(), spec=spec,
                          normalizer=Normalizer(np.zeros(D, np.float32), np.ones(D, np.float32)),
                          task_summary={"name": "t"}, objective="reconstruct",
                          reference=rng.normal(size=(64, D)).astype(np.float32), reports={},
                          threshold=None, seed=0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    np.save(work / "x.npy", x)
    np.savetxt(work / "x.csv", x, delimiter=",", fmt="%.6g")
    return work, bundle


def test_run_on_a_million_row_csv_stays_under_400_mb(data):
    work, bundle = data
    for src in ("x.csv", "x.npy"):
        peak = _peak_mb(sys.executable, "-m", "metaae_edge", "run", str(bundle), "--input",
                        str(work / src), "--output", str(work / "s.npy"), "--mode", "score",
                        "--force")
        assert peak <= 400, (src, peak)
    assert np.load(work / "s.npy").shape == (N,)


def test_runtime_score_on_a_million_rows_adds_under_300_mb(data):
    work, bundle = data
    code = ("import resource, sys, numpy as np\n"
            "from metaae_edge.runtime import Runtime\n"
            "rt = Runtime.load(sys.argv[1], backend='ort-cpu'); x = np.load(sys.argv[2])\n"
            "small = rt.score(x[:4096])\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
            "s = rt.score(x)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base,"
            " float(np.abs(s[:4096] - small).max()))\n")
    out = subprocess.run([sys.executable, "-c", code, str(bundle), str(work / "x.npy")],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    added, diff = (float(v) for v in out.stdout.split())
    assert added <= 300 and diff <= 1e-6, (added, diff)


def test_a_25_megapixel_image_runs_in_bounded_memory(tmp_path):
    from PIL import Image

    spec = ArchSpec(input_shape=(1, 32, 32), encoder=(LayerSpec(16, "relu", 3),
                                                      LayerSpec(32, "relu", 3)),
                    latent_dim=8, decoder=(LayerSpec(32, "relu", 3), LayerSpec(16, "relu", 3)),
                    backbone="conv")
    torch.manual_seed(0)
    x = np.random.default_rng(0).uniform(size=(16, 1, 32, 32)).astype(np.float32)
    bundle = write_bundle(tmp_path / "b", model=CompactConvAE(spec).eval(), spec=spec,
                          normalizer=Normalizer.fit(x.reshape(16, -1), "global"),
                          task_summary={"name": "t"}, objective="reconstruct",
                          reference=x.reshape(16, -1), threshold=None, reports={}, seed=0)
    img = np.random.default_rng(1).integers(0, 255, (5000, 5000), np.uint8)
    Image.fromarray(img).save(tmp_path / "p.png")
    peak = _peak_mb(sys.executable, "-m", "metaae_edge", "run", str(bundle), "--input",
                    str(tmp_path / "p.png"), "--out", str(tmp_path / "o"), "--mode",
                    "reconstruct")
    assert peak <= 1500, peak  # 5.6 GB before tiling (issue 17)
    assert Image.open(tmp_path / "o" / "p.png").size == (5000, 5000)
