"""Session 28's input-space Gaussian in the generator (optional density.npz keys
``input_weight`` / ``input_mean`` / ``input_chol``): sampled with torch blocked and
reproducible by seed; a bundle without the keys generates as before; the fit keeps
constant values constant; the weight chosen on support folds follows which part models
the support better; bad keys are refused."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from metaae_edge.exporters.density import add_density
from metaae_edge.exporters.writer import BundleWriter
from metaae_edge.runtime import Runtime
from metaae_edge.runtime.density import DENSITY_FILE, Density, fit_density
from metaae_edge.runtime.density_blend import (
    WEIGHTS,
    choose_input_weight,
    fit_input_gaussian,
)
from tests.vector_helpers import D, assert_density_refused, write_tiny_bundle

MEAN = np.linspace(-3.0, 3.0, D)
CHOL = np.tril(np.full((D, D), 0.2)) + np.diag(np.linspace(0.5, 2.0, D))


def _support(n: int = 80) -> np.ndarray:
    return np.random.default_rng(3).normal(size=(n, D)).astype(np.float32)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """``plain``: a density without the new keys; ``half`` / ``all``: the same density
    with a known input Gaussian of weight 0.5 / 1."""
    root = tmp_path_factory.mktemp("blend")
    plain = root / "plain"
    write_tiny_bundle(plain, exporter="torchscript")
    add_density(plain, _support(), blend=False)
    base = Density.load(plain / DENSITY_FILE)
    out = {"plain": plain}
    for name, w in (("half", 0.5), ("all", 1.0)):
        out[name] = root / name
        shutil.copytree(plain, out[name])
        with BundleWriter.update(out[name]) as writer:
            writer.path(DENSITY_FILE).write_bytes(dataclasses.replace(
                base, input_weight=w, input_mean=MEAN.astype(np.float32),
                input_chol=CHOL.astype(np.float32)).to_bytes())
            writer.add(DENSITY_FILE, "density")
            writer.commit()
    return out


def test_blend_samples_without_torch_reproducible(bundles, python_without):
    code = """
import sys, numpy as np
from metaae_edge.runtime import Runtime
half, whole, plain = (Runtime.load(p) for p in sys.argv[1:4])
a, b = half.generate(4000, seed=3), half.generate(4000, seed=3)
assert np.array_equal(a, b) and not np.allclose(a, half.generate(4000, seed=4))
x = whole.generate(6000, seed=1)  # weight 1: every row from the input Gaussian
mean, chol = np.asarray(sys.argv[4].split(","), float), None
assert np.abs(x.mean(0) - mean).max() < 0.15, x.mean(0)
# residual=False leaves the input component out: the plain bundle's decoded means
assert np.array_equal(whole.generate(50, seed=2, residual=False),
                      plain.generate(50, seed=2, residual=False))
# weight 0.5: about half the rows are the plain bundle's, the others replaced
p = plain.generate(4000, seed=3)
same = np.all(a == p, axis=1).mean()
assert 0.45 < same < 0.55, same
assert not loaded("torch")
print("ok")
"""
    res = python_without(code, bundles["half"], bundles["all"], bundles["plain"],
                         ",".join(f"{v:.6f}" for v in MEAN))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_weight_one_has_the_stored_covariance(bundles):
    x = Runtime.load(bundles["all"]).generate(20000, seed=0).astype(np.float64)
    cov = CHOL @ CHOL.T
    assert np.abs(np.cov(x.T) - cov).max() < 0.1 * np.abs(cov).max()


def test_without_the_keys_nothing_new_is_stored_or_drawn(bundles):
    with np.load(bundles["plain"] / DENSITY_FILE) as f:
        assert not {"input_weight", "input_mean", "input_chol"} & set(f.files)
    assert Density.load(bundles["plain"] / DENSITY_FILE).input_weight == 0.0


def test_bad_blend_keys_are_refused(bundles, tmp_path):
    good = Density.load(bundles["half"] / DENSITY_FILE)
    upper = good.input_chol.T.copy()
    assert_density_refused([dataclasses.replace(good, input_weight=1.5),
                            dataclasses.replace(good, input_chol=upper),
                            dataclasses.replace(good, input_mean=good.input_mean[:3])],
                           tmp_path)


def test_input_gaussian_keeps_constant_values_constant():
    rng = np.random.default_rng(0)
    x = rng.multivariate_normal(np.zeros(4), [[4, 1, 0, 0], [1, 1, 0, 0], [0, 0, 9, 2],
                                             [0, 0, 2, 1]], 400) + [1, 2, 3, 4]
    x = np.insert(x, 2, 7.0, axis=1)  # a constant column in the middle
    mean, chol = fit_input_gaussian(x, seed=0)
    cov = chol.astype(np.float64) @ chol.T
    assert np.allclose(np.triu(chol, 1), 0)
    assert mean[2] == pytest.approx(7.0) and cov[2, 2] < 1e-10
    assert np.abs(np.delete(np.delete(cov, 2, 0), 2, 1) - np.cov(np.delete(x, 2, 1).T)
                  ).max() < 0.8


def _clusters(n: int = 96) -> np.ndarray:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 3)) * 0.3
    x[: n // 2] += 3.0
    return x


def test_weight_follows_which_part_models_the_support():
    x = _clusters()
    density = fit_density(x, seed=0, max_components=2)  # latent = input, two clusters
    resid = np.zeros_like(x) + 1e-3 * np.random.default_rng(2).normal(size=x.shape)
    good, scores = choose_input_weight(x, x, resid, density, lambda z: z, seed=0)
    assert good in WEIGHTS and set(scores) == {f"{w:g}" for w in WEIGHTS}
    assert good <= 0.25  # the decoded two-cluster mixture beats one Gaussian
    assert choose_input_weight(x, x, resid, density, lambda z: z, seed=0) == (good, scores)
    bad, _ = choose_input_weight(x, x, resid, density, lambda z: z + 5.0, seed=0)
    assert bad == 1.0  # a decoder that misses the data: the input Gaussian alone


def test_add_density_records_the_choice(tmp_path):
    b = write_tiny_bundle(tmp_path / "b", exporter="torchscript")
    assert "input_weight" not in add_density(b, _support())  # off by default
    section = add_density(b, _support(), blend=True)
    assert section["input_weight"] in WEIGHTS
    assert set(section["input_weight_mmd2"]) == {f"{w:g}" for w in WEIGHTS}
    d = Density.load(b / DENSITY_FILE)
    assert d.input_weight == section["input_weight"]
    assert (d.input_mean is None) == (section["input_weight"] == 0)
