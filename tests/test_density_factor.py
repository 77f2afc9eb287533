"""Session 30 (b): the factor-analysis residual (``runtime/density_factor.py``). The EM fit
recovers a known low-rank + diagonal covariance; the rank choice is seeded, beats the
shrunk Gaussian on low-rank residuals and keeps it on isotropic ones; a bundle whose
density has a factor residual stores no new key (the covariance goes through the existing
``residual_chol``) and samples with torch blocked, reproducibly by seed; without the option
the density is the same as before, byte for byte."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from metaae_edge.exporters.density import add_density
from metaae_edge.runtime.density import DENSITY_FILE, Density
from metaae_edge.runtime.density_factor import choose_factor_rank, factor_covariance
from metaae_edge.runtime.density_residual import fit_residuals
from tests.vector_helpers import D, write_tiny_bundle

OLD_KEYS = {"chols", "latent_shape", "means", "residual_chol", "residual_mean", "weights"}


def _low_rank(n: int, d: int, rank: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, rank)) * 2.0
    psi = rng.uniform(0.2, 1.0, d)
    x = rng.normal(size=(n, rank)) @ w.T + rng.normal(size=(n, d)) * np.sqrt(psi)
    return x, w @ w.T + np.diag(psi)


def test_factor_covariance_recovers_low_rank_plus_diagonal():
    x, cov = _low_rank(4000, 12, 3)
    est = factor_covariance(x, 3)
    assert np.linalg.norm(est - cov) / np.linalg.norm(cov) < 0.08
    np.linalg.cholesky(est)  # positive definite


def test_rank_choice_low_rank_vs_isotropic():
    x, _ = _low_rank(64, 40, 4)
    _, _, _, _, info = fit_residuals(x, None, np.ones(40), seed=0, factor=True)
    assert info["residual_factor_rank"] in (2, 4, 8)
    assert fit_residuals(x, None, np.ones(40), seed=0, factor=True)[4] == info  # seeded
    iso = np.random.default_rng(1).normal(size=(64, 40))
    more = fit_residuals(iso, None, np.ones(40), seed=0, factor=True)[4]
    assert "residual_factor_rank" not in more  # the shrunk Gaussian (towards I) wins
    assert max(more["residual_factor_cv_loglik"].values()) <= more["residual_shrunk_cv_loglik"]
    assert choose_factor_rank(iso, np.inf, seed=0)[0] is None
    # off: exactly the shrunk residual of before
    a = fit_residuals(x, None, np.ones(40), seed=0)
    assert "residual_factor_rank" not in a[4] and "residual_factor_cv_loglik" not in a[4]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("fa")
    plain = write_tiny_bundle(root / "plain", exporter="torchscript")
    support, _ = _low_rank(64, D, 2, seed=3)
    out = {}
    for name, factor in (("off", False), ("off2", False), ("on", True)):
        shutil.copytree(plain, root / name)
        out[name] = add_density(root / name, support.astype(np.float32), factor=factor,
                                per_component=False, location=None)
        out[name + "_path"] = root / name
    return out


def test_factor_bundle_has_no_new_keys_and_off_is_unchanged(bundles):
    on, off = bundles["on_path"], bundles["off_path"]
    keys = []
    for root in (on, off):
        with np.load(root / DENSITY_FILE) as f:
            keys.append(set(f.files))
    assert keys[0] == keys[1] and OLD_KEYS <= keys[0] <= OLD_KEYS | {"temperature"}
    assert (off / DENSITY_FILE).read_bytes() == (bundles["off2_path"] / DENSITY_FILE
                                                 ).read_bytes()
    assert "residual_factor_rank" in bundles["on"]
    d = Density.load(on / DENSITY_FILE)
    rank = bundles["on"]["residual_factor_rank"]
    cov = d.residual_chol.astype(np.float64) @ d.residual_chol.T
    assert cov.shape == (D, D) and rank < D


def test_factor_bundle_samples_without_torch_reproducible(bundles, python_without):
    code = """
import sys, numpy as np
from metaae_edge.runtime import Runtime
rt = Runtime.load(sys.argv[1])
a, b, c = rt.generate(500, seed=3), rt.generate(500, seed=3), rt.generate(500, seed=4)
assert np.array_equal(a, b) and not np.allclose(a, c) and np.all(np.isfinite(a))
assert not loaded("torch")
print("ok")
"""
    res = python_without(code, bundles["on_path"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
