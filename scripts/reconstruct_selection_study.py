"""Reconstruct candidate selection rules compared on TRAIN-split family tasks (never test).

Per task (``--split``, indices ``--first`` ..): every candidate of
:func:`metaae_edge.pipeline.candidates.compete` (ours, PCA sizes, pca+residual) is scored
per row (a) on the single 20% held-out split that ``compete`` uses and (b) out of fold by
k-fold cross-validation of the support; each candidate's query MSE after the refit on the
whole support is recorded. Rules are then applied offline and the exported / PCA (at
ours' latent, whole support) ratio of mean query MSE is printed per family and S.

    python scripts/reconstruct_selection_study.py --families manifold,sensors,tabular \
        --tasks 10 --shots 32,256 --cache /tmp/sel.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _q_mse(result, x_raw: np.ndarray) -> float:
    import torch

    z = result.normalizer.transform(x_raw).astype(np.float32)
    with torch.no_grad():
        recon = result.model(torch.from_numpy(z))[0].numpy()
    return float(((recon - z) ** 2).mean())


def _rows(result, x_raw: np.ndarray) -> np.ndarray:
    from metaae_edge.pipeline.candidates import row_scores

    z = result.normalizer.transform(np.asarray(x_raw)).astype(np.float64)
    return row_scores(result, "reconstruct", z, {})


def _fit_menu(run_adapt, task, fit_rows, names, seed):
    """Every candidate named in ``names`` fitted on ``fit_rows`` of ``task``."""
    from metaae_edge.pipeline.candidates import pca_result, with_support
    from metaae_edge.pipeline.residual_candidate import RESIDUAL_PREFIX, residual_result

    t = with_support(task, fit_rows)
    norm = t.normalizer()
    z = norm.transform(t.support).astype(np.float64)
    out = {}
    for n in names:
        if n == "ours":
            out[n] = run_adapt(t)
        elif n.startswith("pca-"):
            out[n] = pca_result(z, min(int(n[4:]), len(z) - 1, z.shape[1] - 1), norm, n)
        elif n.startswith(RESIDUAL_PREFIX):
            out[n] = residual_result(t.support, norm, int(n[len(RESIDUAL_PREFIX):]), seed)
    return out


def _record(run_adapt, task, k: int, seed: int) -> dict:
    """Single-split rows, k-fold out-of-fold rows and refit query MSE of every candidate."""
    from metaae_edge.pipeline.candidates import compete

    comp = compete(run_adapt, task, None, "reconstruct", 0.2, seed)
    names = [c["name"] for c in comp.selection["candidates"]]
    n = len(task.support)
    n_hold = max(int(round(n * 0.2)), 4)
    perm = np.random.default_rng(seed).permutation(n)
    single = _fit_menu(run_adapt, task, task.support[perm[n_hold:]], names, seed)
    hold = task.support[perm[:n_hold]]
    full = _fit_menu(run_adapt, task, task.support, names, seed)
    folds = np.array_split(np.random.default_rng(seed + 1).permutation(n), k)
    oof = {nm: np.zeros(n) for nm in names}
    for f in folds:
        rest = np.setdiff1d(np.arange(n), f)
        fitted = _fit_menu(run_adapt, task, task.support[rest], names, seed)
        for nm, res in fitted.items():
            oof[nm][f] = _rows(res, task.support[f])
    from sklearn.decomposition import PCA

    norm = task.normalizer()
    zs, zq = norm.transform(task.support), norm.transform(task.query)
    lat = full["ours"].spec.latent_dim
    pca = PCA(n_components=min(lat, *zs.shape)).fit(zs)
    return {"names": names, "picked": comp.selection["selected"]["name"],
            "picked_q": _q_mse(comp.winner, task.query),
            "ref_pca": float(((pca.inverse_transform(pca.transform(zq)) - zq) ** 2).mean()),
            "single": {nm: _rows(single[nm], hold).tolist() for nm in names},
            "kfold": {nm: oof[nm].tolist() for nm in names},
            "query": {nm: _q_mse(full[nm], task.query) for nm in names}}


def _se(d: np.ndarray) -> float:
    return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0


def choose(rec: dict, source: str, incumbent: str, z: float = 1.0) -> str:
    """The rule: ``incumbent`` ``ours`` (today) or ``pca`` (the best-scoring PCA); the
    best other candidate (pca+residual gated: > z SE over the best PCA) replaces it only
    if it beats it by more than ``z`` standard errors of the paired per-row difference."""
    rows = {n: np.asarray(v) for n, v in rec[source].items()}
    pcas = [n for n in rows if n.startswith("pca-")]
    best_pca = max(pcas, key=lambda n: rows[n].mean())
    gated = {n for n in rows if n.startswith("pca+")
             if not (rows[n] - rows[best_pca]).mean() > z * _se(rows[n] - rows[best_pca])}
    inc = "ours" if incumbent == "ours" else best_pca
    others = [n for n in rows if n != inc and n not in gated]
    if not others:
        return inc
    best = max(others, key=lambda n: rows[n].mean())
    d = rows[best] - rows[inc]
    return best if d.mean() > z * _se(d) else inc


RULES = {"single, ours inc (before r25)": ("single", "ours"),
         "single, pca inc": ("single", "pca"),
         "kfold, ours inc": ("kfold", "ours"),
         "kfold, pca inc": ("kfold", "pca")}


def report(recs: list[dict]) -> str:
    ref = np.mean([r["ref_pca"] for r in recs])
    parts = [f"compete (now) {np.mean([r['picked_q'] for r in recs]) / ref:.3f}"]
    for label, (src, inc) in RULES.items():
        picks = [choose(r, src, inc) for r in recs]
        q = np.mean([r["query"][p] for r, p in zip(recs, picks, strict=True)])
        parts.append(f"{label} {q / ref:.3f}")
    oracle = np.mean([min(r["query"].values()) for r in recs])
    parts.append(f"oracle {oracle / ref:.3f}")
    return "; ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="manifold,sensors,tabular")
    ap.add_argument("--split", default="train")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--shots", default="32,256")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    import torch

    from metaae_edge.adapt import adapt
    from metaae_edge.meta import load_checkpoint
    from metaae_edge.meta.checkpoint import builtin_checkpoints
    from metaae_edge.tasks import create_family

    if args.split == "test":
        raise SystemExit("this study chooses settings: train or val tasks only")
    torch.set_num_threads(1)
    cache = json.loads(args.cache.read_text()) if args.cache and args.cache.exists() else {}
    for fam in args.families.split(","):
        name = f"builtin:{fam}" if fam in builtin_checkpoints() else "builtin:manifold"
        ckpt = load_checkpoint(name)
        family = create_family(fam, seed=0)
        for s in (int(v) for v in args.shots.split(",")):
            t0, recs = time.perf_counter(), []
            for i in range(args.first, args.first + args.tasks):
                key = f"{fam}/{args.split}/{i}/{s}/{args.folds}"
                if key not in cache:
                    task = family.sample(args.split, i, objective="reconstruct", n_support=s)
                    cache[key] = _record(lambda t, c=ckpt: adapt(c, t, seed=0), task,
                                         args.folds, 0)
                    if args.cache:
                        args.cache.write_text(json.dumps(cache))
                recs.append(cache[key])
            print(f"{fam} S={s} n={len(recs)}: {report(recs)} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
