#!/usr/bin/env python
"""Fit the meta-learned detector selector (metaae_edge/pipeline/detector_selector.py).

Collect: for N tasks of the ``tabular`` family's TRAIN split (labels known there) at each
shot count, fit every anomaly candidate as ``adapt-and-export --candidates all`` does,
record the label-free meta-features and every pool candidate's query ROC-AUC. Fit: one
ridge per candidate predicting its AUC minus the incumbent's; the threshold ``tau`` is
chosen on 5-fold cross-validated predictions (train split only). ``--evaluate test``
collects the TEST split and reports fixed incumbent vs selector vs oracle. Never reads
a real dataset.

    python scripts/fit_detector_selector.py collect --split train --tasks 30 --out tr.json
    python scripts/fit_detector_selector.py fit tr.json \
        --out metaae_edge/checkpoints/detector_selector.json
    python scripts/fit_detector_selector.py evaluate te.json \
        --selector metaae_edge/checkpoints/detector_selector.json
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from metaae_edge.pipeline.detector_selector import INCUMBENT, POOL, pool_scores


def collect(split: str, n_tasks: int, shots: list[int], ckpt_name: str) -> list[dict]:
    from sklearn.metrics import roc_auc_score

    from metaae_edge.adapt import adapt, query_scores
    from metaae_edge.meta import load_checkpoint
    from metaae_edge.pipeline.candidates import Candidate, closed_form_candidates, select
    from metaae_edge.pipeline.detector_selector import meta_features
    from metaae_edge.pipeline.export import split_holdout
    from metaae_edge.tasks import create_family

    ckpt = load_checkpoint(ckpt_name)
    fam = create_family("tabular")
    rows = []
    for s in shots:
        for i in range(n_tasks):
            task = fam.sample(split, i, objective="anomaly", n_support=s, n_query=256)
            fit, hold = split_holdout(task, 0.2, 0)
            ours = adapt(ckpt, fit, finetune_steps=30)
            norm = fit.normalizer()
            cands = [Candidate("ours", ours), *closed_form_candidates(
                fit.support, norm, "anomaly", 1 << 30, 0, hold, ours)]
            select(cands, "anomaly", hold, fit.support, 0, use_selector=False)
            fz = norm.transform(fit.support).astype(np.float64)
            feats = meta_features(fz, cands, 0)
            auc = {}
            for name, (_, c) in pool_scores(cands).items():
                sc = np.nan_to_num(query_scores(c.result, task.query), nan=np.inf,
                                   posinf=1e300)
                auc[name] = float(roc_auc_score(task.query_labels, sc))
            rows.append({"shots": s, "task": i, "features": feats.tolist(), "auc": auc})
            print(f"{split} S={s} {i}: " + " ".join(f"{k}={v:.3f}" for k, v in auc.items()),
                  file=sys.stderr)
    return rows


def _design(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([r["features"] for r in rows], np.float64)
    y = np.array([[r["auc"].get(p, np.nan) - r["auc"][INCUMBENT] for p in POOL]
                  for r in rows])
    return x, y


def fit_models(x: np.ndarray, y: np.ndarray, alpha: float) -> dict:
    mu = np.nanmean(x, axis=0)
    sd = np.nanstd(x, axis=0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    xs = np.where(np.isnan(x), 0.0, (np.nan_to_num(x) - mu) / sd)
    models = {}
    for j, name in enumerate(POOL):
        if name == INCUMBENT:
            continue
        ok = ~np.isnan(y[:, j])
        a, b = xs[ok], y[ok, j]
        bm = b.mean()
        coef = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (b - bm))
        models[name] = {"coef": coef.tolist(), "intercept": float(bm)}
    return {"mean": mu.tolist(), "std": sd.tolist(), "models": models}


def realised(sel: dict, x: np.ndarray, y: np.ndarray, tau: float) -> np.ndarray:
    """Per task, the chosen candidate's AUC minus the incumbent's."""
    from metaae_edge.pipeline.detector_selector import predict_gains

    out = []
    for xi, yi in zip(x, y):
        g = {k: v for k, v in predict_gains(sel, xi).items()
             if not np.isnan(yi[POOL.index(k)])}
        best = max(g, key=lambda k: (g[k], k))
        out.append(yi[POOL.index(best)] if g[best] > tau else 0.0)
    return np.array(out)


def cv_fit(x: np.ndarray, y: np.ndarray) -> dict:
    """alpha and tau by 5-fold CV (mean realised gain over the incumbent), then refit."""
    rng = np.random.default_rng(0)
    folds = rng.permutation(len(x)) % 5
    best = None
    for alpha in (1.0, 10.0, 100.0, 1000.0):
        for tau in (0.0, 0.005, 0.01, 0.02, 0.05):
            gain = np.zeros(len(x))
            for f in range(5):
                tr, te = folds != f, folds == f
                gain[te] = realised(fit_models(x[tr], y[tr], alpha), x[te], y[te], tau)
            key = (float(gain.mean()), -alpha, tau)
            print(f"alpha={alpha} tau={tau}: CV gain {gain.mean():+.4f}", file=sys.stderr)
            if best is None or key > best[0]:
                best = (key, alpha, tau)
    (cvgain, _, _), alpha, tau = best
    sel = fit_models(x, y, alpha)
    sel.update({"alpha": alpha, "tau": tau, "cv_gain": cvgain, "pool": list(POOL),
                "incumbent": INCUMBENT, "n_tasks": len(x),
                "fitted_on": "tabular family, train split"})
    return sel


def report(sel: dict, rows: list[dict], label: str) -> None:
    x, y = _design(rows)
    inc = np.array([r["auc"][INCUMBENT] for r in rows])
    gain = realised(sel, x, y, sel["tau"])
    oracle = np.nanmax(y, axis=1)
    for s in sorted({r["shots"] for r in rows}):
        m = np.array([r["shots"] == s for r in rows])
        print(f"{label} S={s} ({m.sum()} tasks): fixed {inc[m].mean():.4f}  selector "
              f"{(inc[m] + gain[m]).mean():.4f}  oracle {(inc[m] + oracle[m]).mean():.4f}"
              f"  switched {int((gain[m] != 0).sum())}")
    print(f"{label} all: fixed {inc.mean():.4f}  selector {(inc + gain).mean():.4f}  "
          f"(gain {gain.mean():+.4f} ± {gain.std(ddof=1) / np.sqrt(len(gain)):.4f} SE)"
          f"  oracle {(inc + oracle).mean():.4f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cmd", choices=("collect", "fit", "evaluate"))
    p.add_argument("records", nargs="?")
    p.add_argument("--split", default="train")
    p.add_argument("--tasks", type=int, default=30)
    p.add_argument("--shots", default="32,256")
    p.add_argument("--checkpoint", default="builtin:manifold")
    p.add_argument("--selector")
    p.add_argument("--out")
    a = p.parse_args(argv)
    if a.cmd == "collect":
        rows = collect(a.split, a.tasks, [int(s) for s in a.shots.split(",")],
                       a.checkpoint)
        with open(a.out, "w") as f:
            json.dump(rows, f)
        return 0
    with open(a.records) as f:
        rows = json.load(f)
    if a.cmd == "fit":
        sel = cv_fit(*_design(rows))
        with open(a.out, "w") as f:
            json.dump(sel, f, indent=1)
        report(sel, rows, "train (in-sample)")
        return 0
    with open(a.selector) as f:
        report(json.load(f), rows, "evaluate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
