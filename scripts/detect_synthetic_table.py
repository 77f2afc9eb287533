#!/usr/bin/env python
"""Anomaly ROC-AUC of several checkpoints on held-out synthetic ``tabular`` tasks.

Each checkpoint is adapted on the task's normal support with ``metaae_edge.adapt.adapt``
(the anomaly objective, the default fine-tune) and scored with ``query_scores`` (the
exported score); mean ± 95% Student-t interval over the tasks, and the mean paired
difference to the first checkpoint. ``--split val`` is where design choices are made;
``test`` is for the final numbers only.

    python scripts/detect_synthetic_table.py --checkpoints builtin:tabular,builtin:manifold \\
        --split test --tasks 12 --shots 32,256
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from metaae_edge.evaluate.metrics import mean_ci


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", required=True, help="comma-separated checkpoints")
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--tasks", type=int, default=12)
    p.add_argument("--shots", default="32,256")
    p.add_argument("--family", default="tabular")
    return p.parse_args(argv)


def auc(ckpt, task) -> float:
    from sklearn.metrics import roc_auc_score

    from metaae_edge.adapt import adapt, query_scores

    res = adapt(ckpt, task)
    scores = np.nan_to_num(query_scores(res, task.query).astype(np.float64), nan=np.inf,
                           posinf=1e300)
    return float(roc_auc_score(task.query_labels, scores))


def main(argv: list[str] | None = None) -> int:
    import torch

    from metaae_edge.meta import load_checkpoint
    from metaae_edge.tasks import create_family

    args = parse_args(argv)
    torch.set_num_threads(1)
    names = args.checkpoints.split(",")
    ckpts = [load_checkpoint(n) for n in names]
    fam = create_family(args.family)
    t0 = time.time()
    print(f"| S | tasks | {' | '.join(names)} | diff to {names[0]} |")
    print("|" + " --- |" * (len(names) + 3))
    for shots in (int(s) for s in args.shots.split(",")):
        res: list[list[float]] = [[] for _ in names]
        for i in range(args.tasks):
            task = fam.sample(args.split, i, objective="anomaly", n_support=shots,
                              n_query=256)
            for r, c in zip(res, ckpts):
                r.append(auc(c, task))
            print(f"  S={shots} task {i}: " + " ".join(f"{r[-1]:.3f}" for r in res),
                  file=sys.stderr, flush=True)
        cells = [f"{c['mean']:.4f} ± {c['ci95']:.4f}" for c in map(mean_ci, res)]
        diffs = [f"{np.mean(np.subtract(r, res[0])):+.4f}" for r in res[1:]]
        print(f"| {shots} | {args.tasks} | {' | '.join(cells)} | {', '.join(diffs)} |",
              flush=True)
    print(f"({args.family} {args.split} split; {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
