#!/usr/bin/env python
"""ROC-AUC of the classical detectors (and of metaae-edge) on real one-class tasks.

For every installed real dataset (:data:`metaae_edge.tasks.realdata.REAL_DATASETS`), a
few normal classes, seeds and shot counts (where the class has enough normal rows): fit
each detector of :data:`metaae_edge.evaluate.detectors.DETECTORS` on the normal support
only, score the query, report ROC-AUC as mean and 95% Student-t interval over the
(class, seed) units, and name the per-row best classical detector *after the fact* (an
oracle: no detector is chosen with query labels). ``ours`` is
``metaae_edge.adapt.adapt`` from a checkpoint (default ``builtin:manifold``) with the
task's anomaly objective, scored by ``query_scores``; wider rows than the checkpoint's
``max_input_dim`` (128) go through adapt's PCA front-end, as ``adapt-and-export`` does
(``--ours-max-features`` restores a cap).
``ours-meta`` is what ``adapt-and-export --candidates meta`` exports ("ours" adapted on
the support minus the 20% threshold hold-out); ``ensemble`` / ``ensemble+ours`` are the
exported detector candidates of :mod:`metaae_edge.pipeline.detector_candidates` fitted
on the same rows, and ``exported`` what ``--candidates all`` exports (chosen by
:mod:`metaae_edge.pipeline.candidates` on the hold-out: no labels, no query).

Tasks that know their channel count (the windowed real datasets, ``sensors``) pass it on,
so the exported ensembles include the window front-end (``--candidates all`` with
``--channels``); rows declared as whole series (``info["series"]``) or windows also get
the ``shift-knn`` and ``rocket`` columns, the exported shift-tolerant kNN and MiniRocket
candidates alone (scored, not chosen;
not counted as a classical detector, not in the paired summary line).
``--synthetic-family tabular,sensors`` adds held-out family tasks.

Example::

    python scripts/real_anomaly_table.py --seeds 0,1,2 --shots 32,256 --classes 3
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict

import numpy as np

from metaae_edge.errors import DataError
from metaae_edge.evaluate.detectors import DETECTORS
from metaae_edge.tasks import create_family
from metaae_edge.tasks.realdata import REAL_DATASETS, available_datasets, real_task

OURS_MAX_FEATURES = 1 << 30  # every width (default of --ours-max-features)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default=",".join(available_datasets()),
                   help="comma-separated names (default: every installed dataset)")
    p.add_argument("--classes", type=int, default=3,
                   help="normal classes per dataset, evenly spaced over its classes")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--shots", default="32,256", help="support sizes (normal rows)")
    p.add_argument("--contamination", type=float, default=0.1)
    p.add_argument("--detectors", default=",".join(DETECTORS))
    p.add_argument("--checkpoint", default="builtin:manifold",
                   help="checkpoint for 'ours'; 'none' skips it")
    p.add_argument("--finetune-steps", type=int, default=30)
    p.add_argument("--ours-max-features", type=int, default=OURS_MAX_FEATURES,
                   help="skip ours (and the exported columns) above this many features")
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="also N held-out tasks of the 'tabular' family per shot count")
    p.add_argument("--synthetic-family", default="tabular",
                   help="comma-separated families of --synthetic (sensors: windows, their "
                        "channel count known: the window front-end joins)")
    p.add_argument("--synthetic-split", default="test", choices=("train", "val", "test"),
                   help="the tabular split of --synthetic (train: the meta-training tasks "
                        "design choices are made on)")
    return p.parse_args(argv)


def pick_classes(classes: tuple[str, ...], n: int) -> list[str]:
    """``n`` classes evenly spaced over ``classes`` (all of them if there are fewer)."""
    if n >= len(classes):
        return list(classes)
    return [classes[int(i)] for i in np.linspace(0, len(classes) - 1, n).round()]


def ours_auc(ckpt, task, finetune_steps: int) -> float:
    """ROC-AUC of metaae-edge adapted on the support (the current product)."""
    from sklearn.metrics import roc_auc_score

    from metaae_edge.adapt import adapt, query_scores

    res = adapt(ckpt, task, finetune_steps=finetune_steps)
    return float(roc_auc_score(task.query_labels, query_scores(res, task.query)))


#: the columns of metaae-edge (every other column is a classical detector)
OURS_COLUMNS = ("ours", "ours-meta", "ensemble", "ensemble+ours", "exported")
#: exported candidates shown where present (series / window rows), not in the paired line
EXTRA_COLUMNS = ("shift-knn", "rocket")


def ours_cand_auc(ckpt, task, finetune_steps: int, holdout: float = 0.2
                  ) -> dict[str, float]:
    """ROC-AUC of what ``adapt-and-export --candidates all`` exports (``exported``: the
    candidate :func:`~metaae_edge.pipeline.candidates.select` picks on the threshold
    hold-out, no labels, no query), and, for the table, of ``ours-meta`` (``--candidates
    meta``: ours adapted on the support minus the hold-out, the same fit rows as every
    candidate) and of the exported ``ensemble`` / ``ensemble+ours`` candidates. The
    query's labels are read only here, to score."""
    from sklearn.metrics import roc_auc_score

    from metaae_edge.adapt import adapt, query_scores
    from metaae_edge.pipeline.candidates import Candidate, closed_form_candidates, select
    from metaae_edge.pipeline.export import split_holdout

    fit, hold = split_holdout(task, holdout, 0)
    ours = adapt(ckpt, fit, finetune_steps=finetune_steps)
    cands = [Candidate("ours", ours), *closed_form_candidates(
        fit.support, fit.normalizer(), "anomaly", 1 << 30, 0, hold, ours,
        task.info.get("channels"), task.info.get("series"))]
    best, _ = select(cands, "anomaly", hold, fit.support, 0)
    print(f"  selected {best.name}", file=sys.stderr)

    def auc(res) -> float:
        scores = np.nan_to_num(query_scores(res, task.query), nan=np.inf, posinf=1e300)
        return float(roc_auc_score(task.query_labels, scores))

    by_name = {c.name: c.result for c in cands}
    out = {"ours-meta": auc(ours), "exported": auc(best.result)}
    out.update({n: auc(by_name[n]) for n in ("ensemble", "ensemble+ours", *EXTRA_COLUMNS)
                if n in by_name})
    out["_selected"] = best.name
    return out


def run_unit(task, detectors: list[str], ckpt, finetune_steps: int,
             ours_max: int = OURS_MAX_FEATURES) -> dict[str, float]:
    """Every method's AUC on one task."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for name in detectors:
        scores = np.nan_to_num(DETECTORS[name].fit(task.support, task.seed)(task.query),
                               nan=np.inf, posinf=1e300, neginf=-1e300)
        out[name] = float(roc_auc_score(task.query_labels, scores))
    if ckpt is not None and task.input_dim <= ours_max:
        out["ours"] = ours_auc(ckpt, task, finetune_steps)
        out.update(ours_cand_auc(ckpt, task, finetune_steps))
    return out


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and 95% Student-t half-width (nan with one unit)."""
    from scipy import stats

    a = np.asarray(values, np.float64)
    if len(a) < 2:
        return float(a.mean()), float("nan")
    return float(a.mean()), float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1)
                                  / math.sqrt(len(a)))


def collect(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """AUCs per (dataset, shots) -> method -> list over units; and skip notes."""
    ckpt = None
    if args.checkpoint != "none":
        from metaae_edge.meta import load_checkpoint

        ckpt = load_checkpoint(args.checkpoint)
    detectors = args.detectors.split(",")
    results: dict = defaultdict(lambda: defaultdict(list))
    notes: list[str] = []
    for name in [n for n in args.datasets.split(",") if n]:
        ds = REAL_DATASETS[name]
        if ckpt is not None and ds.n_features > args.ours_max_features:
            notes.append(f"{name}: {ds.n_features} features > {args.ours_max_features}, "
                         "ours skipped (--ours-max-features)")
        for shots in (int(s) for s in args.shots.split(",")):
            for cls in pick_classes(ds.normal_classes, args.classes):
                for seed in (int(s) for s in args.seeds.split(",")):
                    try:
                        task = real_task(name, cls, seed, shots,
                                         contamination=args.contamination)
                    except DataError:
                        notes.append(f"{name} class {cls}: too few normal rows for "
                                     f"S={shots}")
                        break
                    key = (name, shots)
                    print(f"{name} S={shots} class {cls} seed {seed}", file=sys.stderr)
                    results[key]["_classes"].append(cls)
                    for m, v in run_unit(task, detectors, ckpt, args.finetune_steps,
                                         args.ours_max_features).items():
                        results[key][m].append(v)
    for fam in args.synthetic_family.split(",") if args.synthetic else ():
        for shots in (int(s) for s in args.shots.split(",")):
            for i in range(args.synthetic):
                task = create_family(fam).sample(args.synthetic_split, i,
                                                 objective="anomaly", n_support=shots,
                                                 n_query=256)
                key = (f"{fam} (synthetic, {args.synthetic_split} split)", shots)
                print(f"{fam} {args.synthetic_split} {i} S={shots}", file=sys.stderr)
                for m, v in run_unit(task, detectors, ckpt, args.finetune_steps,
                                     args.ours_max_features).items():
                    results[key][m].append(v)
    return results, notes


def table(results: dict, methods: list[str]) -> str:
    """Markdown: one row per (dataset, shots), mean ± 95% CI, best classical in bold."""
    head = ["dataset", "S", "units", *methods, "best classical"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    best_means: list[float] = []
    paired: list[list[float]] = []  # OURS_COLUMNS, then best classical
    for (name, shots), res in results.items():
        stats = {m: mean_ci(res[m]) for m in methods if res.get(m)}
        classical = {m: s for m, s in stats.items()
                     if m not in OURS_COLUMNS + EXTRA_COLUMNS}
        best = max(classical, key=lambda m: classical[m][0])
        best_means.append(classical[best][0])
        if all(m in stats for m in OURS_COLUMNS):
            paired.append([stats[m][0] for m in OURS_COLUMNS] + [classical[best][0]])
        cells = []
        for m in methods:
            if m not in stats:
                cells.append("-")
                continue
            mu, ci = stats[m]
            txt = f"{mu:.3f} ± {ci:.3f}" if np.isfinite(ci) else f"{mu:.3f}"
            cells.append(f"**{txt}**" if m == best else txt)
        n = len(res[methods[0]])
        lines.append(f"| {name} | {shots} | {n} | " + " | ".join(cells)
                     + f" | {best} ({classical[best][0]:.3f}) |")
    lines.append(f"\nMean of the per-row best classical: {np.mean(best_means):.4f}"
                 f" over {len(best_means)} rows.")
    if paired:
        *ours, b = np.mean(paired, axis=0)
        lines.append(f"Rows where ours ran ({len(paired)}): " + ", ".join(
            f"{m} {v:.4f} ({v - b:+.4f})" for m, v in zip(OURS_COLUMNS, ours))
            + f" vs best classical {b:.4f} (differences in brackets).")
    return "\n".join(lines)


def selected_table(results: dict) -> str:
    """Markdown: per row, how many units exported each candidate (PCA sizes together)."""
    from collections import Counter

    counts = {key: Counter("pca-Q" if n.startswith("pca-") else n
                           for n in res.get("_selected", [])) for key, res in results.items()}
    names = sorted({n for c in counts.values() for n in c})
    if not names:
        return ""
    lines = ["| dataset | S | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 2)]
    for (name, shots), c in counts.items():
        lines.append(f"| {name} | {shots} | " + " | ".join(str(c[n]) for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    results, notes = collect(args)
    methods = args.detectors.split(",")
    if any("ours" in r for r in results.values()):
        methods += list(OURS_COLUMNS)
        methods += [m for m in EXTRA_COLUMNS if any(m in r for r in results.values())]
    print(table(results, methods))
    print("\nExported candidate (units per row):\n\n" + selected_table(results))
    for note in dict.fromkeys(notes):
        print(f"- {note}")
    print(f"\n{time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
