"""Wide inputs (the PCA front-end folded into the compact net) and the data-scaled
adaptation budget (early stopping, --budget-s; the few-shot path unchanged)."""

import json

import numpy as np
import pytest
import torch

from metaae_edge.adapt import adapt
from metaae_edge.budget import FEW_SHOT_ROWS
from metaae_edge.errors import DataError
from metaae_edge.pipeline import ExportOptions, adapt_and_export
from metaae_edge.projection import fit_projection, fold
from metaae_edge.runtime import Runtime
from metaae_edge.space import CompactAE
from metaae_edge.spec import ArchSpec, LayerSpec
from metaae_edge.tasks import Task, create_family


def _wide_csv(path, d: int, n: int = 80, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    x = np.tanh(z @ rng.normal(size=(4, d))) * 10.0 + 0.05 * rng.normal(size=(n, d))
    np.savetxt(path, x, delimiter=",", header=",".join(f"c{i}" for i in range(d)),
               comments="")
    return x.astype(np.float32)


@pytest.mark.parametrize("bypass", [False, True])
def test_fold_computes_the_projected_network_exactly(bypass):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(50, 300)).astype(np.float32)
    proj = fit_projection(z, 20)
    assert proj.dim == 20 and np.allclose(proj.components.T @ proj.components, np.eye(20))
    spec = ArchSpec(input_shape=(20,), encoder=(LayerSpec(16, "tanh"),), latent_dim=4,
                    decoder=(LayerSpec(16, "relu"),), linear_bypass=bypass).validate()
    torch.manual_seed(0)
    small = CompactAE(spec).eval()
    wide, wspec = fold(small, spec, proj)
    assert wspec.input_dim == 300
    u = torch.as_tensor(proj.components, dtype=torch.float32)
    with torch.no_grad():
        r_small, lat_small = small(torch.as_tensor(proj.apply(z)))
        r_wide, lat_wide = wide(torch.as_tensor(z))
    torch.testing.assert_close(lat_wide, lat_small, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(r_wide, (r_small @ u.T) / proj.scale, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("d", [576, pytest.param(1024, marks=pytest.mark.slow)])
def test_wide_csv_adapts_exports_and_runs(cli, tmp_path, d):
    path = tmp_path / f"wide{d}.csv"
    x = _wide_csv(path, d)
    bundle = tmp_path / "b"
    code, _, err = cli("adapt-and-export", "builtin:tabular", "--data", path, "--out", bundle,
                       "--candidates", "meta")
    assert code == 0, err
    assert f"wide input: {d} features" in err and "passed=True" in err
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["input"]["shape"] == [None, d]
    proj = manifest["reports"]["adaptation"]["input_projection"]
    assert proj["input_dim"] == d and 1 <= proj["components"] <= 128
    out = tmp_path / "score.npy"
    code, _, err = cli("run", bundle, "--input", path, "--output", out, "--mode", "score")
    assert code == 0, err
    scores = np.load(out)
    assert scores.shape == (len(x),) and np.isfinite(scores).all()
    # the runtime's scores are the folded torch model's
    np.testing.assert_allclose(scores, Runtime.load(bundle).score(x), rtol=1e-5)


def test_wide_model_reconstructs_near_pca_and_a_bce_task_is_refused():
    fam = create_family("tabular", min_features=600, max_features=600)
    task = fam.sample("test", 2, n_support=48, n_query=64)
    res = adapt("builtin:tabular", task)
    norm = task.normalizer()
    zs, zq = norm.transform(task.support), norm.transform(task.query)
    _, _, vt = np.linalg.svd(zs - zs.mean(0), full_matrices=False)
    v = vt[: res.spec.latent_dim].T
    pca = float((((zq - zs.mean(0)) - (zq - zs.mean(0)) @ v @ v.T) ** 2).mean())
    ours = res.report["after"]["query_mse"]
    assert res.spec.input_dim == 600 and ours < 1.25 * pca, (ours, pca)
    bce = Task("b", "x", np.random.default_rng(0).random((40, 200)),
               np.random.default_rng(1).random((10, 200)), loss="bce")
    with pytest.raises(DataError, match="mse"):
        adapt("builtin:tabular", bce)


def _graphs(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    return {f["path"]: f["sha256"] for f in manifest["files"] if f["path"].endswith(".onnx")}


def test_few_shot_default_adapts_as_the_fixed_path():
    task = create_family("tabular").sample("test", 0, n_support=FEW_SHOT_ROWS)
    a, b = (adapt("builtin:tabular", task, early_stop=m) for m in ("auto", "off"))
    assert "finetune" not in a.report and a.report["finetune_steps"] == 30
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert a.spec == b.spec and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_few_shot_default_is_the_fixed_path_bit_for_bit(tmp_path):
    task = create_family("tabular").sample("test", 0, n_support=FEW_SHOT_ROWS)
    runs = {}
    for mode in ("auto", "off"):
        rep = adapt_and_export("builtin:tabular", task, ExportOptions(
            out=tmp_path / mode, early_stop=mode, candidates="meta", budget_s=60.0))
        runs[mode] = rep
        assert "finetune" not in rep.adaptation and rep.adaptation["finetune_steps"] == 30
    assert _graphs(runs["auto"].bundle) == _graphs(runs["off"].bundle)


def test_early_stopping_above_the_few_shot_rows_and_budget():
    task = create_family("tabular").sample("test", 1, n_support=400)
    res = adapt("builtin:tabular", task)
    ft = res.report["finetune"]
    assert ft["mode"] == "early_stop" and ft["held_out_rows"] == 40
    assert ft["held_out_mse_best"] <= ft["held_out_mse_start"]
    assert ft["stopped_by"] in ("patience", "max_steps")
    capped = adapt("builtin:tabular", task, budget_s=1e-6)
    assert capped.report["finetune"]["stopped_by"] == "budget_s"
    assert capped.report["finetune"]["steps_run"] == 0
    with pytest.raises(DataError, match="early-stop"):
        adapt("builtin:tabular", task, early_stop="sometimes")


def test_bad_budget_options_are_one_line_errors(cli, tmp_path):
    path = tmp_path / "w.csv"
    _wide_csv(path, 8, n=40)
    for flag, value, text in (("--budget-s", "0", "--budget-s"),
                              ("--early-stop", "maybe", "--early-stop")):
        code, _, err = cli("adapt-and-export", "builtin:tabular", "--data", path,
                           "--out", tmp_path / "b", flag, value)
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and text in lines[0], err
