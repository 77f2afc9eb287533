"""Closed-form candidates (metaae_edge.pipeline.candidates) and their selection."""

import hashlib
import json

import numpy as np
import pytest

from metaae_edge.adapt import adapt, query_scores
from metaae_edge.meta import load_checkpoint
from metaae_edge.pipeline import ExportOptions, adapt_and_export
from metaae_edge.pipeline.candidates import (
    closed_form_candidates,
    compete,
    pca_result,
    pseudo_anomalies,
    uses_candidates,
)
from metaae_edge.pipeline.export import split_holdout
from metaae_edge.tasks.base import Normalizer, Task


@pytest.fixture(scope="module")
def ckpt():
    return load_checkpoint("builtin:manifold")


def _linear(n=100, d=12, rank=3, noise=1e-4, seed=0):
    """Exactly linear rows: rank-3 factors, a column offset and scale, tiny noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d))
    return (x * rng.uniform(0.5, 3.0, d) + rng.uniform(-5, 5, d)
            + noise * rng.standard_normal((n, d))).astype(np.float32)


def _task(objective="reconstruct", query=None, n=100):
    x = _linear(n + 40)
    q = x[n:] if query is None else query
    labels = np.r_[np.zeros(len(q) - 8), np.ones(8)] if objective == "anomaly" else None
    return Task("linear", "user", x[:n], q, objective=objective, query_labels=labels)


def _sha(path):
    return hashlib.sha256((path / "autoencoder.onnx").read_bytes()).hexdigest()


def test_selects_pca_on_linear_data_and_the_bundle_is_that_pca(ckpt, tmp_path):
    from metaae_edge.runtime import Runtime

    task = _task()
    support = task.support.copy()
    rep = adapt_and_export(ckpt, task, ExportOptions(out=tmp_path / "b"))
    sel = rep.selection["selected"]
    assert sel["name"].startswith("pca-") and rep.spec.encoder == () == rep.spec.decoder
    assert np.array_equal(task.support, support)  # the caller's task is not modified
    # the graph is PCA of the standardised support at the selected size (numpy, here)
    norm = Normalizer.fit(support)
    z = norm.transform(support).astype(np.float64)
    mean = z.mean(axis=0)
    basis = np.linalg.svd(z - mean, full_matrices=False)[2][:rep.spec.latent_dim]
    zq = norm.transform(task.query).astype(np.float64) - mean
    expected = ((zq @ basis.T) @ basis + mean) * norm.std + norm.mean
    got = Runtime.load(rep.bundle).reconstruct(task.query)
    assert np.abs(got - expected).max() < 1e-4
    assert rep.manifest["parity"]["passed"]


def test_report_and_manifest_name_the_winner_and_margin(ckpt, tmp_path):
    rep = adapt_and_export(ckpt, _task("anomaly"),
                           ExportOptions(out=tmp_path / "b", candidates="all"))
    manifest = json.loads((rep.bundle / "manifest.json").read_text())
    reports = manifest["reports"]
    assert reports["selected"] == rep.selection["selected"]
    cands, sel = reports["candidates"], reports["selected"]
    assert cands[0]["name"] == "ours" and {"name", "arch", "score"} <= set(cands[0])
    by_name = {c["name"]: c["score"] for c in cands}
    others = [v for k, v in by_name.items() if k != sel["name"]]
    assert sel["score"] == by_name[sel["name"]]
    assert sel["margin"] == pytest.approx(sel["score"] - max(others))
    assert "pseudo-anomalies" in sel["criterion"] and "incumbent" in sel["rule"]
    # anomaly: the incumbent (the z-scored ensemble with ours' error) is exported; the
    # best challenger and its paired difference are reported
    assert sel["name"] == sel["incumbent"] == "ensemble+ours"
    assert {"challenger", "difference", "se"} <= set(sel["vs_incumbent"])
    assert "difference" in sel["vs_ours"]
    assert rep.arch == next(c["arch"] for c in cands if c["name"] == sel["name"])
    assert "before" in reports["adaptation"]  # "ours"' adaptation report is kept


def test_meta_mode_writes_the_meta_learned_bundle(ckpt, tmp_path):
    """``--candidates meta`` = the pipeline before candidates: adapt on the support, export."""
    from metaae_edge.exporters.bundle import write_bundle

    task = _task()
    rep = adapt_and_export(ckpt, task, ExportOptions(out=tmp_path / "meta", candidates="meta"))
    res = adapt(ckpt, task, steps=int(ckpt.inner_config.get("steps", 10)), seed=0)
    ref = write_bundle(tmp_path / "ref", model=res.model, spec=res.spec,
                       normalizer=res.normalizer, task_summary=task.summary(),
                       objective="reconstruct", reference=task.query, threshold=None,
                       reports={"adaptation": res.report}, seed=0)
    assert _sha(rep.bundle) == _sha(ref)
    assert rep.selection is None and set(rep.manifest["reports"]) == {"adaptation"}


def test_selection_never_reads_the_query(ckpt):
    clean = _task("anomaly")
    poisoned = _task("anomaly", query=np.full_like(clean.query, np.nan))

    def run(task):
        fit, hold = split_holdout(task, 0.2, 0)
        return compete(lambda t: adapt(ckpt, t, seed=0), fit, hold, "anomaly", 0.2, 0)

    a, b = run(clean), run(poisoned)
    assert a.selection == b.selection and a.selection["selected"]["name"]
    assert np.isfinite(query_scores(b.winner, clean.support)).all()


def test_pseudo_anomalies_keep_marginals_and_leave_the_range():
    rng = np.random.default_rng(1)
    hold, fit = rng.standard_normal((10, 5)), rng.standard_normal((40, 5))
    p = pseudo_anomalies(hold, fit, seed=0)
    for j in range(5):  # dependency: every value is a held-out value of its column
        assert np.isin(p["dependency"][:, j], hold[:, j]).all()
    spread = lambda a: np.abs(a - fit.mean(axis=0)).mean()  # noqa: E731
    assert spread(p["local"]) > 1.5 * spread(hold)


def test_candidate_sizes_and_caps():
    z = _linear(60).astype(np.float64)
    norm = Normalizer.fit(z)
    rec = closed_form_candidates(z, norm, "reconstruct", cap=4)
    assert [c.name for c in rec] == [f"pca-{c.result.spec.latent_dim}" for c in rec]
    assert max(c.result.spec.latent_dim for c in rec) <= 4 and "pca-3" in [c.name for c in rec]
    names = [c.name for c in closed_form_candidates(z, norm, "anomaly", cap=99)]
    assert "gaussian" in names and max(int(n[4:]) for n in names if n[:4] == "pca-") == 11
    # a PCA at full rank reconstructs exactly (the linear maps are the components)
    full = pca_result(norm.transform(z), 11, norm)
    assert query_scores(full, z).max() < 1e-6


def test_auto_is_meta_for_images_and_denoising(cli, tmp_path):
    assert uses_candidates("all", "anomaly", image=False)
    assert not uses_candidates("auto", "anomaly", image=False)  # measured no gain
    assert uses_candidates("auto", "reconstruct", image=False)
    assert not uses_candidates("all", "anomaly", image=True)
    assert not uses_candidates("auto", "denoise", image=False)
    assert not uses_candidates("meta", "reconstruct", image=False)
    code, _, err = cli("adapt-and-export", "builtin:manifold", "--task", "manifold:0",
                       "--out", tmp_path / "b", "--candidates", "best")
    assert code == 2 and "--candidates must be one of auto, all, meta" in err


@pytest.mark.parametrize("refuse", [
    "closed_form", pytest.param("all", marks=pytest.mark.slow)])  # "all": 15 s on 2 cores
def test_a_refused_precision_falls_back_to_ours(ckpt, tmp_path, monkeypatch, refuse):
    """int8 refused for the PCA winner: ours is exported instead (if ours passes)."""
    import metaae_edge.pipeline.export as export
    from metaae_edge.runtime import load_bundle

    def fake(bundle, t, options, hold, log, on_precision):
        linear = load_bundle(bundle).manifest["arch"]["encoder"] == []
        ok = not (refuse == "all" or linear)
        return [export.PrecisionResult("int8", ok, error=None if ok else "refused")]

    monkeypatch.setattr(export, "_precisions", fake)
    rep = adapt_and_export(ckpt, _task(), ExportOptions(out=tmp_path / "b",
                                                         precisions="fp32,int8"))
    sel = rep.selection["selected"]
    assert sel["fallback"]["from"].startswith("pca-") and sel["fallback"]["refused"] == ["int8"]
    if refuse == "closed_form":
        assert sel["name"] == sel["fallback"]["to"] == "ours" and rep.spec.encoder != ()
        assert rep.refused == []
    else:  # ours refused too: the better fp32 model (the PCA) ships without int8
        assert sel["name"] == sel["fallback"]["to"] == sel["fallback"]["from"]
        assert rep.spec.encoder == () and rep.refused == ["int8"]
    manifest = load_bundle(rep.bundle).manifest
    assert manifest["reports"]["selected"] == sel


def test_cli_says_whose_query_mse_it_prints(cli, tmp_path):
    """When a closed-form candidate is exported, the adaptation line is labelled as the
    meta-learned model's, so a user does not read ours' query MSE as the bundle's."""
    data = tmp_path / "linear.npy"
    np.save(data, _linear(140))
    code, out, err = cli("adapt-and-export", "builtin:manifold", "--data", data,
                         "--out", tmp_path / "b")
    log = " ".join((out + err).split())  # the progress console wraps long lines
    assert code == 0
    assert "selected pca-" in log and "meta-learned model (not exported): query MSE" in log
    code, out, err = cli("adapt-and-export", "builtin:manifold", "--data", data,
                         "--out", tmp_path / "m", "--candidates", "meta")
    log = " ".join((out + err).split())
    assert code == 0 and "query MSE" in log
    assert "selected" not in log and "not exported" not in log


def _fake(names, rows, monkeypatch):
    """Candidates named ``names`` whose held-out per-row scores are ``rows``."""
    from types import SimpleNamespace

    from metaae_edge.pipeline import candidates as cmod

    norm = Normalizer.fit(np.zeros((4, 2), np.float32) + np.arange(4)[:, None])
    table = {id(r): r for r in rows}
    cands = [cmod.Candidate(n, SimpleNamespace(normalizer=norm, tag=id(r)))
             for n, r in zip(names, rows)]
    monkeypatch.setattr(cmod, "row_scores", lambda res, *a: table[res.tag])
    return cands


@pytest.mark.parametrize("gain,winner", [(0.0005, "pca-4"), (0.5, "ours")])
def test_reconstruct_incumbent_is_the_best_pca(gain, winner, monkeypatch):
    from metaae_edge.pipeline.candidates import select

    rng = np.random.default_rng(0)
    base = -rng.uniform(1, 2, 40)
    noise = 0.01 * rng.standard_normal(40)
    noise -= noise.mean()  # the paired difference has mean exactly `gain`, SE ~0.0016
    names = ["ours", "pca-2", "pca-4"]
    # ours' held-out score is above the best PCA's in both cases; only a gain of more than
    # one standard error of the paired difference replaces the PCA
    cands = _fake(names, [base + gain + noise, base - 1, base], monkeypatch)
    chosen, sel = select(cands, "reconstruct", np.zeros((4, 2)), np.zeros((8, 2)))
    assert sel["incumbent"] == "pca-4" and chosen.name == winner
    assert sel["vs_incumbent"]["challenger"] == "ours"
