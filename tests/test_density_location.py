"""Session 30's location prior (optional density.npz key ``location_shift``): the
empirical-Bayes shift recovers a low-rank family of task means, is refused for an
implausible support mean or another input size, is sampled with torch blocked and
reproducibly by seed, and a bundle without the key (no prior for its family) generates
exactly as before; a bad key is refused."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from metaae_edge.exporters.density import PRIORS_FILE, add_density
from metaae_edge.runtime.density import DENSITY_FILE, Density
from metaae_edge.runtime.density_location import (
    LocationPrior,
    fit_prior,
    load_priors,
    posterior_shift,
    sampling_cov,
)
from tests.vector_helpers import D, assert_density_refused, write_tiny_bundle

BASIS = np.random.default_rng(7).normal(size=(D, 2))  # task means: m + BASIS a


def _task(seed: int, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, true mean)`` of one task of the toy family."""
    rng = np.random.default_rng(seed)
    mean = 1.0 + BASIS @ rng.normal(size=2) * 3.0
    return mean + rng.normal(size=(n, D)), mean


@pytest.fixture(scope="module")
def prior() -> LocationPrior:
    tasks = [_task(100 + i, 256)[0] for i in range(150)]
    return fit_prior(np.array([t.mean(0) for t in tasks]),
                     np.array([sampling_cov(t) for t in tasks]))


def test_the_shift_removes_the_error_outside_the_prior_span(prior):
    before, after = [], []
    for i in range(30):
        rows, mean = _task(i)
        shift = posterior_shift(rows, prior)
        assert shift is not None
        before.append(((rows.mean(0) - mean) ** 2).sum())
        after.append(((rows.mean(0) + shift - mean) ** 2).sum())
    assert np.mean(after) < 0.45 * np.mean(before)  # 2 of 10 directions left


def test_implausible_or_other_sizes_get_no_shift(prior):
    rows, _ = _task(0)
    assert posterior_shift(rows + 50.0, prior) is None
    assert posterior_shift(rows[:, :-1], prior) is None


def _priors_file(prior: LocationPrior, path):
    path.write_text(json.dumps({"families": {"toy": {str(D): prior.to_json()}}}))
    return path


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, prior):
    root = tmp_path_factory.mktemp("location")
    priors = _priors_file(prior, root / "priors.json")
    support = _task(5)[0].astype(np.float32)
    plain = write_tiny_bundle(root / "plain", exporter="torchscript",
                              task_summary={"name": "t", "family": "toy"})
    other = root / "other"
    shutil.copytree(plain, other)
    add_density(plain, support, seed=0)  # the shipped priors: none for "toy"
    section = add_density(other, support, seed=0, location=priors)
    shifted = Density.load(other / DENSITY_FILE).location_shift
    return {"plain": plain, "shifted": other, "section": section, "shift": shifted,
            "priors": priors, "support": support}


def test_shift_sampled_without_torch_reproducible(bundles, python_without):
    assert bundles["section"]["location_prior"] == "toy"
    np.save(bundles["priors"].parent / "shift.npy", bundles["shift"])
    code = """
import sys, numpy as np
from metaae_edge.runtime import Runtime
shifted, plain = Runtime.load(sys.argv[1]), Runtime.load(sys.argv[2])
shift = np.load(sys.argv[3])
a, b = shifted.generate(500, seed=3), shifted.generate(500, seed=3)
assert np.array_equal(a, b) and not np.allclose(a, shifted.generate(500, seed=4))
assert np.allclose(a, plain.generate(500, seed=3) + shift, atol=1e-5)
assert np.allclose(shifted.generate(50, seed=2, residual=False),
                   plain.generate(50, seed=2, residual=False) + shift, atol=1e-5)
assert not loaded("torch")
print("ok")
"""
    res = python_without(code, bundles["shifted"], bundles["plain"],
                         bundles["priors"].parent / "shift.npy")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_inspect_shows_the_prior_only_where_it_is_used(bundles, cli):
    code, out, err = cli("inspect", bundles["shifted"])
    assert code == 0, err
    rms = bundles["section"]["location_shift_rms"]
    assert f"location prior toy (shift rms {rms:g} support std)" in " ".join(out.split())
    code, out, err = cli("inspect", bundles["plain"])
    assert code == 0 and "location prior" not in out, err


def test_write_bundle_uses_the_shipped_prior_unless_told_not_to(bundles, tmp_path,
                                                                monkeypatch):
    from metaae_edge.exporters import density

    monkeypatch.setattr(density, "PRIORS_FILE", bundles["priors"])  # "toy" as if shipped
    kw = {"task_summary": {"name": "t", "family": "toy"}, "density_support": bundles["support"]}
    on = write_tiny_bundle(tmp_path / "on", **kw)
    off = write_tiny_bundle(tmp_path / "off", density_prior=False, **kw)
    sections = [json.loads((b / "manifest.json").read_text())["density"] for b in (on, off)]
    assert sections[0]["location_prior"] == "toy"
    assert "location_prior" not in sections[1]
    with np.load(on / DENSITY_FILE) as f_on, np.load(off / DENSITY_FILE) as f_off:
        assert "location_shift" in f_on.files and "location_shift" not in f_off.files
        np.testing.assert_allclose(f_on["location_shift"], bundles["shift"], atol=1e-6)


def test_without_a_prior_for_the_family_nothing_changes(bundles, tmp_path):
    with np.load(bundles["plain"] / DENSITY_FILE) as f:
        assert "location_shift" not in f.files
    other = tmp_path / "b"
    shutil.copytree(bundles["plain"], other)
    section = add_density(other, bundles["support"], seed=0,
                          location=tmp_path / "missing.json")
    assert "location_prior" not in section
    assert (other / DENSITY_FILE).read_bytes() == \
        (bundles["plain"] / DENSITY_FILE).read_bytes()
    assert set(load_priors(bundles["priors"])) == {"toy"}


def test_bad_location_shift_is_refused(bundles, tmp_path):
    good = Density.load(bundles["shifted"] / DENSITY_FILE)
    assert_density_refused([dataclasses.replace(good, location_shift=np.full(D, np.nan)),
                            dataclasses.replace(good, location_shift=np.zeros((2, D)))],
                           tmp_path)


def test_the_shipped_sensors_prior_moves_test_supports_towards_their_query():
    from metaae_edge.tasks import create_family

    priors = load_priors(PRIORS_FILE)["sensors"]
    assert sorted(priors) == [16, 24, 32, 48, 64, 72, 96, 128]
    fam, gains = create_family("sensors", seed=0), []
    for i in range(4):
        t = fam.sample("test", i, objective="reconstruct")
        s = np.asarray(t.support, np.float64)
        shift = posterior_shift(s, priors[s.shape[1]], i)
        if shift is not None:
            q = np.asarray(t.query, np.float64).mean(0)
            gains.append(((q - s.mean(0) - shift) ** 2).sum() - ((q - s.mean(0)) ** 2).sum())
    assert len(gains) >= 3 and np.mean(gains) < 0
