"""Generation: the latent density in the bundle, Runtime.generate / run --mode generate
through decoder.onnx (torch blocked), the CLI's refusals, and the sample metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from metaae_edge.errors import BundleError, InputError
from metaae_edge.evaluate.generation import (
    input_gaussian,
    knn_precision_recall,
    mmd2,
    pca_sampling,
)
from metaae_edge.exporters.density import add_density
from metaae_edge.runtime import Runtime, load_bundle
from metaae_edge.runtime.density import DENSITY_FILE, fit_density
from tests.vector_helpers import D, write_tiny_bundle


def _support(n: int = 64) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, D)).astype(np.float32)


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """A bundle as adapt-and-export wrote them before generation: no density."""
    return write_tiny_bundle(tmp_path_factory.mktemp("gen") / "plain", exporter="torchscript")


@pytest.fixture(scope="module")
def gen_bundle(tmp_path_factory, plain) -> Path:
    out = tmp_path_factory.mktemp("gen") / "b"
    shutil.copytree(plain, out)
    add_density(out, _support())
    return out


def test_density_is_listed_hashed_and_in_the_manifest(gen_bundle, plain):
    b = load_bundle(gen_bundle, verify=True)
    entry = next(f for f in b.files if f.role == "density")
    assert entry.path == DENSITY_FILE and b.parsed.density["latent_shape"] == [3]
    assert b.parsed.density["components"] >= 1
    old = load_bundle(plain)  # bundles without a density load unchanged
    assert old.parsed.density is None and "density" not in old.manifest


def test_samples_come_from_decoder_onnx_without_torch(gen_bundle, python_without):
    code = """
import sys, numpy as np, onnxruntime as ort
from metaae_edge.runtime import Runtime
from metaae_edge.runtime.density import Density
root = sys.argv[1]
rt = Runtime.load(root)
a, b, c = rt.generate(50, seed=3), rt.generate(50, seed=3), rt.generate(50, seed=4)
mean = rt.generate(2000, seed=3, residual=False)
density = Density.load(root + "/density.npz")
z = density.sample(2000, seed=int(np.random.default_rng(3).integers(2**63)))
sess = ort.InferenceSession(root + "/decoder.onnx", providers=["CPUExecutionProvider"])
ref = sess.run(None, {sess.get_inputs()[0].name: z})[0]
assert a.shape == (50, 10) and np.array_equal(a, b) and not np.allclose(a, c)
assert np.allclose(mean, ref, atol=1e-6), abs(mean - ref).max()
noise = rt.generate(2000, seed=3) - mean  # the residual noise model on top
cov = density.residual_chol @ density.residual_chol.T
assert np.allclose(noise.mean(0), density.residual_mean, atol=0.1 * np.sqrt(cov.max()))
assert np.allclose(np.cov(noise.T), cov, atol=0.15 * cov.max())
assert not loaded("torch")
print("ok")
"""
    res = python_without(code, gen_bundle)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_cli_writes_samples_reproducibly(gen_bundle, tmp_path, cli):
    a, b = tmp_path / "a.npy", tmp_path / "b.csv"
    code, _, err = cli("run", gen_bundle, "--mode", "generate", "--n", 20, "--seed", 7,
                       "-o", a)
    assert code == 0, err
    assert cli("run", gen_bundle, "--mode", "generate", "--n", 20, "--seed", 7,
               "-o", b)[0] == 0
    x = np.load(a)
    assert x.shape == (20, D)
    np.testing.assert_allclose(np.loadtxt(b, delimiter=",", ndmin=2), x, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_array_equal(x, Runtime.load(gen_bundle).generate(20, seed=7))


@pytest.mark.parametrize("args, needle", [
    (("--n", 0), "--n must be an integer from 1"),
    (("--n", -3), "--n must be an integer from 1"),
    ((), "--mode generate needs --n"),
])
def test_cli_refuses_bad_n(gen_bundle, tmp_path, cli, args, needle):
    code, _, err = cli("run", gen_bundle, "--mode", "generate", *args, "-o",
                       tmp_path / "x.npy")
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.npy").exists()


def test_cli_refuses_bundles_that_cannot_generate(plain, gen_bundle, tmp_path, cli):
    code, _, err = cli("run", plain, "--mode", "generate", "--n", 5, "-o", tmp_path / "x.npy")
    assert code == 2 and "has no latent density" in err and len(err.strip().splitlines()) == 1
    # a folder of PNGs is an image bundle's output, not a vector bundle's
    code, _, err = cli("run", gen_bundle, "--mode", "generate", "--n", 5, "-o",
                       tmp_path / "pngs")
    assert code == 2 and "unknown format" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("run", gen_bundle, "--mode", "generate", "--n", 5, "-o",
                       gen_bundle / "x.npy")
    assert code == 2 and "inside the bundle" in err
    with pytest.raises(InputError, match="temperature"):
        Runtime.load(gen_bundle).generate(5, temperature=0)


def test_denoise_bundle_is_refused_in_one_line(plain, tmp_path, cli):
    out = tmp_path / "dn"
    shutil.copytree(plain, out)  # the manifest is not among the hashed files
    m = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**m, "objective": "denoise"}))
    code, _, err = cli("run", out, "--mode", "generate", "--n", 5, "-o", tmp_path / "x.npy")
    assert code == 2 and "objective is denoise" in err and len(err.strip().splitlines()) == 1


def test_inspect_verify_passes_and_tampering_is_detected(gen_bundle, tmp_path, cli):
    assert cli("inspect", gen_bundle, "--verify")[0] == 0
    bad = tmp_path / "bad"
    shutil.copytree(gen_bundle, bad)
    raw = bytearray((bad / DENSITY_FILE).read_bytes())
    raw[-30] ^= 0xFF
    (bad / DENSITY_FILE).write_bytes(bytes(raw))
    code, _, err = cli("inspect", bad, "--verify")
    assert code == 2 and DENSITY_FILE in err and "sha256" in err
    with pytest.raises(BundleError):
        Runtime.load(bad)
    # a density section naming an unlisted file is refused on load
    m = json.loads((gen_bundle / "manifest.json").read_text())
    m["density"]["path"] = "elsewhere.npz"
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="density must be an object"):
        load_bundle(bad, verify=False)


def test_density_picks_two_components_for_two_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(40, 4)) + 5, rng.normal(size=(40, 4)) - 5])
    d = fit_density(x, max_components=3)
    assert d.components == 2
    s = d.sample(2000, seed=0)
    assert 0.4 < (s[:, 0] > 0).mean() < 0.6 and np.abs(s).mean() > 3  # two modes, no mass at 0
    one = fit_density(rng.normal(size=(80, 4)), max_components=3)
    assert one.components == 1


def test_mmd_on_known_distributions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 5)), rng.normal(size=(300, 5))
    same = mmd2(a, b)
    shifted = mmd2(a + 1.0, b)
    assert abs(same) < 0.01 and shifted > 0.1 and mmd2(a + 0.3, b) > 5 * abs(same)
    p, r = knn_precision_recall(b, a)
    assert p > 0.8 and r > 0.8
    p, r = knn_precision_recall(b, a + 10.0)
    assert p == 0.0 and r == 0.0


def test_baselines_fit_the_support():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(3, 10))
    sup = rng.normal(size=(64, 3)) @ basis + 0.05 * rng.normal(size=(64, 10))
    held = rng.normal(size=(256, 3)) @ basis + 0.05 * rng.normal(size=(256, 10))
    pca, q = pca_sampling(sup, 256, 0)
    assert q == 3  # the held-out PPCA likelihood finds the true subspace
    far = held + 3.0
    assert mmd2(pca, held) < mmd2(far, held)
    assert mmd2(input_gaussian(sup, 256, 0), held) < mmd2(far, held)


@pytest.mark.slow  # two adaptations and exports: ~15 s alone, ~45 s on a loaded machine
def test_adapt_and_export_adds_a_density_except_for_denoise(tmp_path):
    from metaae_edge.pipeline.export import ExportOptions, adapt_and_export, load_export_task

    fast = {"steps": 2, "finetune_steps": 2, "candidates": "meta"}
    task = load_export_task("builtin:sensors", task="sensors:0")
    rep = adapt_and_export("builtin:sensors", task, ExportOptions(out=tmp_path / "r", **fast))
    assert rep.manifest["density"]["n_codes"] == len(task.support)
    assert rep.manifest["density"]["location_prior"] == "sensors"  # session 30's default
    assert Runtime.load(tmp_path / "r").generate(4, seed=0).shape == (4, task.support.shape[1])
    rep = adapt_and_export("builtin:sensors", task, ExportOptions(
        out=tmp_path / "n", location_prior=False, **fast))  # --no-location-prior
    assert "location_prior" not in rep.manifest["density"]
    dn = load_export_task("builtin:sensors", task="sensors:0", objective="denoise")
    rep = adapt_and_export("builtin:sensors", dn, ExportOptions(out=tmp_path / "d", **fast))
    assert "density" not in rep.manifest


def test_density_choice_on_many_codes_uses_a_seeded_subsample():
    """Above MAX_SELECT_CODES the (components, shrinkage) grid is cross-validated on a
    seeded subsample; the final mixture still sees every code and finds the 3 clusters."""
    from metaae_edge.runtime.density import MAX_SELECT_CODES

    rng = np.random.default_rng(0)
    centres = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]])
    codes = centres[rng.integers(3, size=MAX_SELECT_CODES + 904)] + rng.normal(size=(5000, 2))
    a = fit_density(codes, seed=0)
    assert a.info["n_codes"] == 5000
    assert f"on {MAX_SELECT_CODES} seeded codes" in a.info["selection"]
    assert all(not k.endswith("-iso") for k in a.info["cv_loglik"])  # diagonal target only
    assert a.info["components"] == 3
    b = fit_density(codes, seed=0)
    assert np.array_equal(a.means, b.means)
    small = fit_density(codes[:400], seed=0)
    assert "seeded codes" not in small.info["selection"]
