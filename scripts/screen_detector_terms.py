#!/usr/bin/env python
"""Screen detector terms and their z-scored sums on meta-training (TRAIN split) tasks.

Per task of the ``tabular`` and ``sensors`` families (train split: the tasks design
choices are made on; never a real dataset), as ``adapt-and-export --candidates all``
does: the support minus the 20% threshold hold-out is the fit rows; each exported term of
:mod:`metaae_edge.pipeline.detector_candidates` (raw model space, and for windows
``spec:NAME`` on the phase-invariant window features) is fitted on them and divided by
its std on the held-out normal rows; the query labels are read only to score. Every
composition in ``--compositions`` (``+``-joined term names, ``;``-separated) is then the
sum of its terms, as :class:`~metaae_edge.pipeline.detector_graphs.EnsembleTerm` exports
it. Scores are cached per task (``--cache``), so compositions can be re-screened cheaply.

Example::

    python scripts/screen_detector_terms.py --families tabular,sensors --tasks 20 \\
        --shots 32,256 --cache /tmp/screen.npz
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

RAW = ("knn", "knn-white", "mahalanobis", "pca", "gmm", "ocsvm", "ours")
SPEC = ("spec:knn", "spec:knn-white", "spec:mahalanobis", "spec:pca", "spec:gmm",
        "spec:ocsvm")
DEFAULT_COMPOSITIONS = ";".join([
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
])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default="tabular,sensors")
    p.add_argument("--split", default="train", choices=("train", "val"))
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--shots", default="32,256")
    p.add_argument("--checkpoint", default="builtin:manifold")
    p.add_argument("--cache", default=None, help="npz of per-task term scores (read/write)")
    p.add_argument("--compositions", default=DEFAULT_COMPOSITIONS)
    return p.parse_args(argv)


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
        t = _term(n, z, seed, ours, front)
        sd = _scales([t], hz)[0]
        with torch.no_grad():
            s = t(torch.as_tensor(qz, dtype=torch.float32)).double().numpy()
        out[n] = np.nan_to_num(s / sd, nan=1e30, posinf=1e30)
    return out


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
    for fam in args.families.split(","):
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
        parts = r.split("+")
        cells = []
        for keys in groups.values():
            aucs = [roc_auc_score(cache[k]["_labels"], sum(cache[k][p] for p in parts))
                    for k in keys if all(p in cache[k] for p in parts)]
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
    print(report(cache, [c for c in args.compositions.split(";") if c]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
