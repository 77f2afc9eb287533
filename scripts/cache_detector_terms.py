#!/usr/bin/env python
"""Cache every detector term's scores per unit, for meta-learning the score combination.

A *unit* is one one-class task: a real dataset's (normal class, seed, shots) exactly as
``scripts/real_anomaly_table.py`` builds it (``--classes`` classes by ``pick_classes``,
contamination 0.1), or a synthetic family task of the train / test split (``--families``,
``--splits``, ``--tasks`` per shot count, 256 query rows). Per unit, as
``adapt-and-export --objective anomaly --candidates all`` does: the support minus the
20% threshold hold-out (``split_holdout(task, 0.2, 0)``) is the fit rows, in model space
(the fit rows' normaliser); every term of :data:`TERMS` (and :data:`SPEC_TERMS` for units
whose rows are windows, ``channels``) is fitted on them with
``detector_candidates._term`` (``ours``: the checkpoint adapted on the fit rows, 30
fine-tune steps, as the product adapts it; ``iforest``: scikit-learn's IsolationForest of
the ``iforest`` detector, no graph yet). Stored per term: ``TERM@sd`` (std of its scores
on the held-out normal rows, floored as ``_scales`` floors it), ``TERM@hold`` (those
scores) and ``TERM@query`` (the query's scores); plus ``_labels``. One ``.npz`` per unit
under ``--out``; existing units are kept (resumable).

The query labels are stored for the study (``scripts/study_detector_weights.py``) to
score with; nothing here chooses anything.

Example::

    OMP_NUM_THREADS=1 nice -n 10 python scripts/cache_detector_terms.py --out /tmp/terms
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

#: raw model-space terms (``iforest`` is not exportable yet; cached to learn if it matters)
TERMS = ("knn-white", "knn", "mahalanobis", "pca", "gmm", "ocsvm", "ours", "iforest")
#: window-feature terms, for units whose rows are windows
SPEC_TERMS = ("spec:knn-white", "spec:knn", "spec:mahalanobis", "spec:pca", "spec:gmm",
              "spec:ocsvm")


def parse_args(argv=None):
    from metaae_edge.tasks.realdata import available_datasets

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder of per-unit .npz files")
    p.add_argument("--datasets", default=",".join(available_datasets()))
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--shots", default="32,256")
    p.add_argument("--families", default="tabular,sensors,activities")
    p.add_argument("--splits", default="train,test")
    p.add_argument("--tasks", type=int, default=12, help="synthetic tasks per split and S")
    p.add_argument("--checkpoint", default="builtin:manifold")
    return p.parse_args(argv)


class _IForestTerm:
    """IsolationForest score (``iforest`` detector: 200 trees) as a term-like callable."""

    def __init__(self, z: np.ndarray, seed: int, n_estimators: int = 200):
        from sklearn.ensemble import IsolationForest

        self.model = IsolationForest(n_estimators=n_estimators, random_state=seed).fit(z)

    def __call__(self, zt):
        import torch

        return torch.as_tensor(-self.model.score_samples(zt.double().numpy()))


def fitted_terms(fit, ckpt, seed: int, names=None) -> tuple:
    """``(normaliser, model-space fit rows, {name: term})``: every term of ``names``
    (default :data:`TERMS`, plus :data:`SPEC_TERMS` on windows) fitted on ``fit``'s
    support as the product fits it (``ours``: ``ckpt`` adapted, 30 fine-tune steps;
    skipped when the model cannot decode)."""
    from metaae_edge.adapt import adapt
    from metaae_edge.pipeline.detector_candidates import _term
    from metaae_edge.pipeline.window_features import check_channels, fit_front

    norm = fit.normalizer()
    z = norm.transform(np.asarray(fit.support)).astype(np.float64)
    channels = fit.info.get("channels")
    front = (fit_front(z, norm, check_channels(channels, z.shape[1]))
             if channels is not None else None)
    if names is None:
        names = list(TERMS) + (list(SPEC_TERMS) if front is not None else [])
    ours = adapt(ckpt, fit, finetune_steps=30) if "ours" in names else None
    terms = {}
    for n in names:
        if n.startswith("spec:") and front is None:
            continue
        if n == "ours" and not hasattr(ours.model, "decode"):
            continue
        terms[n] = _IForestTerm(z, seed) if n == "iforest" else _term(n, z, seed, ours, front)
    return norm, z, terms


def term_scores(t, rows: np.ndarray) -> np.ndarray:
    """Term ``t``'s scores of model-space ``rows`` (non-finite values clipped)."""
    import torch

    with torch.no_grad():
        s = t(torch.as_tensor(rows, dtype=torch.float32)).double().numpy()
    return np.nan_to_num(s, nan=1e30, posinf=1e30, neginf=-1e30)


def unit_terms(task, ckpt, seed: int = 0) -> dict[str, np.ndarray]:
    """Every term's held-out std, held-out scores and query scores on one unit."""
    from metaae_edge.pipeline.detector_candidates import _scales
    from metaae_edge.pipeline.export import split_holdout

    fit, hold = split_holdout(task, 0.2, 0)
    norm, _z, terms = fitted_terms(fit, ckpt, seed)
    hz, qz = (norm.transform(np.asarray(a)).astype(np.float64) for a in (hold, task.query))
    out = {"_labels": np.asarray(task.query_labels, np.int8)}
    for n, t in terms.items():
        out[f"{n}@sd"] = np.float64(_scales([t], hz)[0])
        for part, rows in (("hold", hz), ("query", qz)):
            out[f"{n}@{part}"] = term_scores(t, rows)
    return out


def units(args):
    """``(file name, task maker)`` of every unit (real first, then synthetic)."""
    from metaae_edge.errors import DataError
    from metaae_edge.tasks import create_family
    from metaae_edge.tasks.realdata import REAL_DATASETS, real_task

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from real_anomaly_table import pick_classes

    shots = [int(s) for s in args.shots.split(",")]
    for name in [n for n in args.datasets.split(",") if n]:
        for k in shots:
            for cls in pick_classes(REAL_DATASETS[name].normal_classes, args.classes):
                for seed in (int(s) for s in args.seeds.split(",")):
                    try:
                        real_task(name, cls, seed, k, contamination=0.1)
                    except DataError:
                        break  # too few normal rows for S = k, as the real table skips
                    yield (f"real~{name}~{k}~{cls}~{seed}",
                           lambda n=name, c=cls, s=seed, k=k:
                           real_task(n, c, s, k, contamination=0.1))
    for fam in [f for f in args.families.split(",") if f]:
        for split in args.splits.split(","):
            for k in shots:
                for i in range(args.tasks):
                    yield (f"syn~{fam}~{split}~{k}~{i}",
                           lambda f=fam, sp=split, k=k, i=i: create_family(f).sample(
                               sp, i, objective="anomaly", n_support=k, n_query=256))


def main(argv=None) -> int:
    return run_cli(unit_terms, argv, with_checkpoint=True)


def write_unit_caches(args, terms) -> None:
    """One ``KEY.npz`` under ``args.out`` per unit of :func:`units` (``terms(task)``'s
    arrays), skipping units already cached; written to a temporary file, then renamed."""
    t_all = time.time()
    for key, make in units(args):
        path = os.path.join(args.out, key + ".npz")
        if os.path.exists(path):
            continue
        t0 = time.time()
        np.savez(path + ".tmp.npz", **terms(make()))
        os.replace(path + ".tmp.npz", path)
        print(f"{key} {time.time() - t0:.1f}s", file=sys.stderr)
    print(f"{time.time() - t_all:.0f} s", file=sys.stderr)


def time_ordered_unit(task):
    """The shared start of the series-term caches: ``(out, channels, prepared)`` where
    ``out`` holds ``_labels`` and ``_kind`` (``series``, ``window`` or ``table``) and, for
    time-ordered rows only (``channels`` not None), ``prepared`` is ``(z, hz, qz, norm)``:
    the fit rows (support minus the 20% threshold hold-out), hold-out and query in model
    space, and the normaliser."""
    from metaae_edge.pipeline.export import split_holdout

    out = {"_labels": np.asarray(task.query_labels, np.int8)}
    c = task.info.get("series") or task.info.get("channels")
    out["_kind"] = np.array("series" if task.info.get("series") else
                            "window" if c else "table")
    if c is None:
        return out, None, None
    fit, hold = split_holdout(task, 0.2, 0)
    norm = fit.normalizer()
    z, hz, qz = (norm.transform(np.asarray(a)).astype(np.float64)
                 for a in (fit.support, hold, task.query))
    return out, int(c), (z, hz, qz, norm)


def run_cli(terms, argv=None, with_checkpoint: bool = False) -> int:
    """``main`` of a cache script: ``terms(task)``, or ``terms(task, ckpt)`` with the
    ``--checkpoint`` loaded once (``with_checkpoint``), per unit of :func:`units`."""
    import torch

    torch.set_num_threads(1)
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if with_checkpoint:
        from metaae_edge.meta import load_checkpoint

        ckpt = load_checkpoint(args.checkpoint)
        write_unit_caches(args, lambda task: terms(task, ckpt))
    else:
        write_unit_caches(args, terms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
