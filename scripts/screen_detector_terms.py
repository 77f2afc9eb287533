#!/usr/bin/env python
"""Screen detector terms and their z-scored sums on meta-training (TRAIN split) tasks.

Per task of the ``tabular``, ``sensors`` and ``activities`` families (``--families``;
train split: the tasks design choices are made on; never a real dataset), as
``adapt-and-export --candidates all`` does: the support minus the 20% threshold hold-out
is the fit rows; each exported term of
:mod:`metaae_edge.pipeline.detector_candidates` (raw model space, and for windows
``spec:NAME`` on the phase-invariant window features) is fitted on them and divided by
its std on the held-out normal rows; the query labels are read only to score. Every
composition in ``--compositions`` (``+``-joined term names, ``;``-separated) is then the
sum of its terms, as :class:`~metaae_edge.pipeline.detector_graphs.EnsembleTerm` exports
it. Scores are cached per task (``--cache``), so compositions can be re-screened cheaply.

Example::

    python scripts/screen_detector_terms.py --families activities,tabular,sensors \\
        --tasks 20 --shots 32,256 --cache /tmp/screen.npz
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

RAW = ("knn", "knn-white", "mahalanobis", "pca", "pca-ppca", "gmm", "ocsvm", "ours")
SPEC = ("spec:knn", "spec:knn-white", "spec:mahalanobis", "spec:pca", "spec:gmm",
        "spec:ocsvm")
DEFAULT_COMPOSITIONS = ";".join([
    "knn-white+mahalanobis+pca-ppca+ours",
    "knn-white+mahalanobis+pca+ours",
    "knn-white+mahalanobis+pca+ours+gmm",
    "knn-white+mahalanobis+pca+ours+ocsvm",
    "knn-white+mahalanobis+pca+ours+gmm+ocsvm",
    "knn-white+mahalanobis+ours+gmm",
    "knn-white+mahalanobis+ours+ocsvm",
    "mahalanobis+pca+ours+gmm",
    "spec:mahalanobis",
    "spec:knn-white+spec:mahalanobis+spec:pca",
    "spec:knn-white+spec:mahalanobis",
    "spec:mahalanobis+spec:gmm",
    "knn-white+mahalanobis+pca+ours+spec:mahalanobis",
    "knn-white+mahalanobis+pca+ours+spec:knn-white+spec:mahalanobis+spec:pca",
    "knn-white+mahalanobis+pca+ours+spec:knn-white+spec:mahalanobis",
    "knn-white+mahalanobis+pca-ppca+ours+spec:mahalanobis",
    "knn-white+mahalanobis+pca+ours+2*spec:mahalanobis",
    "knn-white+mahalanobis+pca+ours+0.5*ocsvm",
])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default="tabular,sensors")
    p.add_argument("--split", default="train", choices=("train", "val"))
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--shots", default="32,256")
    p.add_argument("--checkpoint", default="builtin:manifold")
    p.add_argument("--real", default="", help="post-hoc diagnostic only (never to choose): "
                   "these real datasets' units as in scripts/real_anomaly_table.py "
                   "(--real-classes classes, seeds 0,1,2, --shots)")
    p.add_argument("--real-classes", type=int, default=3)
    p.add_argument("--cache", default=None, help="npz of per-task term scores (read/write)")
    p.add_argument("--compositions", default=DEFAULT_COMPOSITIONS)
    p.add_argument("--base", default="knn-white+mahalanobis+pca-ppca+ours",
                   help="paired differences of every composition against this one")
    return p.parse_args(argv)


def _ppca_term(z, seed):
    """The PCA residual at the uncapped PPCA size (the ensemble's PCA before the D // 2
    cap of ``detector_candidates.ensemble_pca_size``)."""
    from metaae_edge.evaluate.detectors import pca_latent_size
    from metaae_edge.pipeline.detector_graphs import PcaTerm

    return PcaTerm(z, max(pca_latent_size(z, seed), 1))


def task_terms(task, ckpt, seed: int = 0) -> dict[str, np.ndarray]:
    """Per term: query scores / held-out std; plus ``_labels``."""
    import torch

    from metaae_edge.adapt import adapt
    from metaae_edge.pipeline.detector_candidates import _scales, _term
    from metaae_edge.pipeline.export import split_holdout
    from metaae_edge.pipeline.window_features import fit_front

    fit, hold = split_holdout(task, 0.2, seed)
    norm = fit.normalizer()
    z, hz, qz = (norm.transform(a).astype(np.float64) for a in (fit.support, hold,
                                                                  task.query))
    channels = task.info.get("channels")
    front = fit_front(z, norm, channels) if channels else None
    names = list(RAW) + (list(SPEC) if front is not None else [])
    ours = adapt(ckpt, fit, finetune_steps=30) if ckpt is not None else None
    out = {"_labels": np.asarray(task.query_labels)}
    for n in names:
        if n == "ours" and ours is None:
            continue
        t = _ppca_term(z, seed) if n == "pca-ppca" else _term(n, z, seed, ours, front)
        sd = _scales([t], hz)[0]
        with torch.no_grad():
            s = t(torch.as_tensor(qz, dtype=torch.float32)).double().numpy()
        out[n] = np.nan_to_num(s / sd, nan=1e30, posinf=1e30)
    return out


def _real_units(args):
    """``(cache key, task maker)`` of the real units (the real table's protocol)."""
    from metaae_edge.errors import DataError
    from metaae_edge.tasks.realdata import REAL_DATASETS, real_task

    sys.path.insert(0, os.path.dirname(__file__))
    from real_anomaly_table import pick_classes

    for name in [n for n in args.real.split(",") if n]:
        for shots in (int(s) for s in args.shots.split(",")):
            for cls in pick_classes(REAL_DATASETS[name].normal_classes, args.real_classes):
                for seed in (0, 1, 2):
                    try:
                        real_task(name, cls, seed, shots)
                    except DataError:
                        break
                    yield (f"{name}/real/{shots}/{cls}-{seed}",
                           lambda n=name, c=cls, s=seed, k=shots: real_task(n, c, s, k))


def collect(args) -> dict[str, dict[str, np.ndarray]]:
    from metaae_edge.meta import load_checkpoint
    from metaae_edge.tasks import create_family

    cache: dict[str, dict[str, np.ndarray]] = {}
    if args.cache and os.path.exists(args.cache):
        flat = np.load(args.cache)
        for k in flat.files:
            key, _, term = k.partition("|")
            cache.setdefault(key, {})[term] = flat[k]
    ckpt = load_checkpoint(args.checkpoint) if args.checkpoint != "none" else None
    for key, make in _real_units(args):
        if key not in cache:
            cache[key] = task_terms(make(), ckpt)
            print(key, file=sys.stderr)
    for fam in [f for f in args.families.split(",") if f]:
        for shots in (int(s) for s in args.shots.split(",")):
            for i in range(args.tasks):
                key = f"{fam}/{args.split}/{shots}/{i}"
                if key in cache:
                    continue
                t0 = time.time()
                task = create_family(fam).sample(args.split, i, objective="anomaly",
                                                 n_support=shots, n_query=256)
                cache[key] = task_terms(task, ckpt)
                print(f"{key} {time.time() - t0:.1f}s", file=sys.stderr)
                if args.cache:
                    np.savez(args.cache, **{f"{k}|{t}": v for k, d in cache.items()
                                            for t, v in d.items()})
    return cache


def _score(d: dict[str, np.ndarray], comp: str) -> np.ndarray | None:
    """The summed scores of ``comp`` (``W*term`` weights a term), None if a term is absent."""
    total = 0.0
    for part in comp.split("+"):
        w, _, name = part.rpartition("*")
        if name not in d:
            return None
        total = total + float(w or 1.0) * d[name]
    return total


def paired(cache, compositions: list[str], base: str) -> str:
    """Per (family, S): mean paired AUC difference to ``base``, its SE, wins / losses."""
    from sklearn.metrics import roc_auc_score

    lines = [f"| composition - ({base}) | family | S | diff | SE | wins | losses |",
             "|" + " --- |" * 7]
    groups: dict[tuple[str, str], list[str]] = {}
    for key in cache:
        fam, _, shots, _ = key.split("/")
        groups.setdefault((fam, shots), []).append(key)
    for comp in compositions:
        for (fam, shots), keys in groups.items():
            diffs = []
            for k in keys:
                a, b = _score(cache[k], comp), _score(cache[k], base)
                if a is not None and b is not None:
                    y = cache[k]["_labels"]
                    diffs.append(roc_auc_score(y, a) - roc_auc_score(y, b))
            if len(diffs) < 2 or comp == base:
                continue
            d = np.array(diffs)
            lines.append(f"| {comp} | {fam} | {shots} | {d.mean():+.4f} | "
                         f"{d.std(ddof=1) / np.sqrt(len(d)):.4f} | {int((d > 1e-9).sum())} | "
                         f"{int((d < -1e-9).sum())} |")
    return "\n".join(lines)


def report(cache, compositions: list[str]) -> str:
    from sklearn.metrics import roc_auc_score

    groups: dict[tuple[str, str], list[str]] = {}
    for key in cache:
        fam, split, shots, _ = key.split("/")
        groups.setdefault((fam, shots), []).append(key)
    single = sorted({t for d in cache.values() for t in d if not t.startswith("_")})
    rows = [*single, *compositions]
    head = "| term / composition | " + " | ".join(f"{f} S={s} (n={len(k)})"
                                               for (f, s), k in groups.items()) + " | mean |"
    lines = [head, "|" + " --- |" * (len(groups) + 2)]
    for r in rows:
        cells = []
        for keys in groups.values():
            aucs = [roc_auc_score(cache[k]["_labels"], _score(cache[k], r))
                    for k in keys if _score(cache[k], r) is not None]
            cells.append(float(np.mean(aucs)) if aucs else float("nan"))
        done = [c for c in cells if np.isfinite(c)]
        mean = float(np.mean(done)) if done else float("nan")
        lines.append(f"| {r} | " + " | ".join("-" if not np.isfinite(c) else f"{c:.4f}"
                                               for c in cells) + f" | {mean:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import torch

    torch.set_num_threads(1)
    args = parse_args(argv)
    cache = collect(args)
    comps = [c for c in args.compositions.split(";") if c]
    print(report(cache, comps))
    print()
    print(paired(cache, comps, args.base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
