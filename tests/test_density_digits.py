"""Session 31's structured digits location prior: on train tasks it infers the task's
augmentation and the support rows' classes, it moves val supports towards their query
mean, it refuses inputs that are not digits (other data of 64 values, other sizes), a
digits bundle's samples carry its shift torch-free and reproducibly by seed, and a
non-digits bundle's density is byte for byte as without it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from metaae_edge.exporters.bundle import write_bundle
from metaae_edge.exporters.density import DIGITS_PRIOR_FILE, add_density
from metaae_edge.runtime.density import DENSITY_FILE, Density
from metaae_edge.runtime.density_digits import digits_shift, fit_support, load_digits_prior
from metaae_edge.space.compact import CompactAE
from metaae_edge.spec import ArchSpec, LayerSpec
from metaae_edge.tasks import create_family
from metaae_edge.tasks.base import Normalizer
from metaae_edge.tasks.digits import _load


@pytest.fixture(scope="module")
def prior():
    p = load_digits_prior()
    assert p is not None, f"{DIGITS_PRIOR_FILE} is shipped"
    return p


def _tasks(split: str, first: int, n: int):
    fam = create_family("digits", seed=0)
    return [fam.sample(split, i, objective="reconstruct") for i in range(first, first + n)]


def test_train_tasks_augmentation_and_classes_are_inferred(prior):
    targets = _load()[1]
    aug_ok, rows_ok = [], []
    for t in _tasks("train", 0, 20):
        fit = fit_support(t.support, prior)
        a = t.info["augmentation"]
        aug_ok.append(fit.augmentation[:3] == (a["flip"], a["dy"], a["dx"]))
        truth = targets[np.asarray(t.info["support_indices"])]
        rows_ok.append(np.mean(fit.resp.argmax(1) == truth))
    # measured on these 20 tasks: mirror + shift 20/20, rows' class 0.92 (margin below)
    assert np.mean(aug_ok) >= 0.85
    assert np.mean(rows_ok) >= 0.85


def test_val_supports_move_towards_their_query_mean(prior):
    before, after = [], []
    for t in _tasks("val", 300, 20):
        s, q = np.asarray(t.support, np.float64), np.asarray(t.query, np.float64)
        shift = digits_shift(s, prior)
        assert shift is not None
        before.append(((q.mean(0) - s.mean(0)) ** 2).sum())
        after.append(((q.mean(0) - s.mean(0) - shift) ** 2).sum())
    assert np.mean(after) < 0.8 * np.mean(before)


def test_inputs_that_are_not_digits_get_no_shift(prior):
    fam, found = create_family("sensors", seed=0), 0
    for i in range(200):
        x = np.asarray(fam.sample("train", i, objective="reconstruct").support)
        x = x.reshape(len(x), -1)
        if x.shape[1] == 64:
            assert digits_shift(x, prior) is None
            found += 1
    assert found >= 3
    assert digits_shift(np.random.default_rng(0).random((64, 64)), prior) is None
    assert digits_shift(np.zeros((64, 63)), prior) is None


def _bundle64(out, family: str, support: np.ndarray, density_prior: bool = True):
    """An untrained 64 -> 16 -> [4] -> 16 -> 64 bundle of ``family`` with a density."""
    torch.manual_seed(0)
    spec = ArchSpec(input_shape=(64,), encoder=(LayerSpec(16, "relu"),), latent_dim=4,
                    decoder=(LayerSpec(16, "tanh"),))
    norm = Normalizer(np.zeros(64, np.float32), np.ones(64, np.float32))
    return write_bundle(out, model=CompactAE(spec).eval(), spec=spec, normalizer=norm,
                        task_summary={"name": "t", "family": family},
                        objective="reconstruct", reference=support, threshold=None,
                        reports={}, seed=0, density_support=support,
                        density_prior=density_prior)


@pytest.fixture(scope="module")
def digits_bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    support = np.asarray(_tasks("val", 0, 1)[0].support, np.float32)
    plain = _bundle64(root / "plain", "digits", support, density_prior=False)
    default = _bundle64(root / "default", "digits", support)  # write_bundle's default
    shifted = root / "shifted"
    shutil.copytree(plain, shifted)
    section = add_density(shifted, support, seed=0, digits=DIGITS_PRIOR_FILE)
    np.save(root / "shift.npy", Density.load(shifted / DENSITY_FILE).location_shift)
    return {"plain": plain, "default": default, "shifted": shifted, "section": section,
            "support": support, "root": root}


def test_digits_bundle_samples_carry_the_shift_torch_free(digits_bundles, prior,
                                                         python_without):
    b = digits_bundles
    assert b["section"]["location_prior"] == "digits (structured)"
    with np.load(b["plain"] / DENSITY_FILE) as f:
        assert "location_shift" not in f.files  # --no-location-prior: no digits prior
    # the default of write_bundle (adapt-and-export) since session 31: the digits prior
    assert (b["default"] / DENSITY_FILE).read_bytes() == (b["shifted"] / DENSITY_FILE).read_bytes()
    shift = np.load(b["root"] / "shift.npy")
    np.testing.assert_allclose(shift, digits_shift(b["support"], prior), atol=1e-6)
    assert np.sqrt(np.mean(shift ** 2)) > 0.02  # a move the sample means below can see
    code = """
import sys, numpy as np
from metaae_edge.runtime import Runtime
shifted, plain = Runtime.load(sys.argv[1]), Runtime.load(sys.argv[2])
shift = np.load(sys.argv[3])
a, b = shifted.generate(300, seed=3), shifted.generate(300, seed=3)
assert np.array_equal(a, b) and not np.allclose(a, shifted.generate(300, seed=4))
# the samples centre on the shifted location, not on the plain bundle's (rank-16 factor
# residual with the prior, so rows differ by more than the shift)
m, m0 = shifted.generate(4000, seed=5).mean(0), plain.generate(4000, seed=5).mean(0)
assert np.abs(m - m0 - shift).mean() < 0.5 * np.abs(shift).mean(), (m - m0 - shift)
assert not loaded("torch")
print("ok")
"""
    res = python_without(code, b["shifted"], b["plain"], b["root"] / "shift.npy")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_other_families_density_is_unchanged(digits_bundles, tmp_path):
    support = digits_bundles["support"]
    other = _bundle64(tmp_path / "toy", "toy", support)
    copy = tmp_path / "copy"
    shutil.copytree(other, copy)
    a = add_density(other, support, seed=0)
    b = add_density(copy, support, seed=0, digits=DIGITS_PRIOR_FILE)
    assert a == b and "location_prior" not in b
    assert (other / DENSITY_FILE).read_bytes() == (copy / DENSITY_FILE).read_bytes()
