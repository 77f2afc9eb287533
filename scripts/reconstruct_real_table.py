"""Reconstruction on real datasets: each checkpoint's adapted model (``adapt`` defaults,
the meta-learned model only) against PCA fitted on the same support at the same latent
size, as query MSE in model space (the support's standardisation), mean ± 95% t-interval
over (normal class, seed) units.

    python scripts/reconstruct_real_table.py --checkpoints builtin:manifold,builtin:tabular \
        --datasets wine,breast_cancer,digits,japanese_vowels,italy_power --shots 32,256

The query (held-out normal rows) is only used to score.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _unit(ckpt, task, seed: int) -> tuple[float, float, int]:
    from reconstruct_candidates_table import _mse, _pca_mse

    from metaae_edge.adapt import adapt

    res = adapt(ckpt, task, seed=seed)
    return _mse(res, task.query), _pca_mse(task, res.spec.latent_dim), res.spec.latent_dim


def _ci(v) -> str:
    from scipy import stats

    a = np.asarray(v)
    h = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else 0
    return f"{a.mean():.4f} ± {h:.4f}"


def _tasks(name: str, shots: int, seeds: list[int], classes: int):
    from metaae_edge.errors import DataError
    from metaae_edge.tasks.realdata import REAL_DATASETS, real_task

    ds = REAL_DATASETS[name]
    picks = np.unique(np.linspace(0, len(ds.normal_classes) - 1, classes).round().astype(int))
    for c in picks:
        for s in seeds:
            try:
                yield real_task(name, int(c), s, shots, objective="reconstruct")
            except DataError:
                continue


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", default="builtin:manifold,builtin:tabular")
    ap.add_argument("--datasets", default="wine,breast_cancer,digits,japanese_vowels,"
                    "italy_power")
    ap.add_argument("--shots", default="32,256")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--classes", type=int, default=3)
    args = ap.parse_args()
    import torch

    from metaae_edge.meta import load_checkpoint

    torch.set_num_threads(1)
    ckpts = {c: load_checkpoint(c) for c in args.checkpoints.split(",")}
    seeds = [int(s) for s in args.seeds.split(",")]
    head = " | ".join(f"{c} | {c} / PCA" for c in ckpts)
    print(f"| dataset | S | units | {head} | PCA at tabular's latent |")
    print("| --- | --- | --- |" + " --- | --- |" * len(ckpts) + " --- |")
    for name in args.datasets.split(","):
        for shots in (int(v) for v in args.shots.split(",")):
            tasks = list(_tasks(name, shots, seeds, args.classes))
            if not tasks:
                continue
            t0, cells, pca = time.perf_counter(), [], []
            for ckpt in ckpts.values():
                rows = np.array([_unit(ckpt, t, t.seed) for t in tasks])
                cells.append(f"{_ci(rows[:, 0])} | {rows[:, 0].mean() / rows[:, 1].mean():.2f}")
                pca = rows[:, 1]
            print(f"| {name} | {shots} | {len(tasks)} | {' | '.join(cells)} | {_ci(pca)} |"
                  f"  <!-- {time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
