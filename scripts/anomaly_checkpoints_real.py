"""Anomaly ROC-AUC of checkpoints (default builtin:manifold vs builtin:tabular) on real
datasets at S = 32 (``adapt`` with the anomaly objective, scored with ``query_scores``);
the (normal class, seed) units of reconstruct_real_table.py.

    python scripts/anomaly_checkpoints_real.py [--checkpoints A,B,...]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="builtin:manifold,builtin:tabular")
    args = p.parse_args()
    import torch
    from sklearn.metrics import roc_auc_score

    import metaae_edge.tasks.realdata as rd
    from metaae_edge.adapt import adapt, query_scores
    from metaae_edge.meta import load_checkpoint

    torch.set_num_threads(1)
    ck = {c: load_checkpoint(c) for c in args.checkpoints.split(",")}
    per_dataset: dict[str, list[float]] = {c: [] for c in ck}
    for name in ("wine", "breast_cancer", "digits", "japanese_vowels", "italy_power"):
        ds = rd.REAL_DATASETS[name]
        picks = np.unique(np.linspace(0, len(ds.normal_classes) - 1, 3).round().astype(int))
        res: dict[str, list[float]] = {c: [] for c in ck}
        for cl in picks:
            for s in (0, 1, 2):
                t = rd.real_task(name, int(cl), s, 32)
                for c, k in ck.items():
                    r = adapt(k, t, seed=s)
                    res[c].append(roc_auc_score(t.query_labels, query_scores(r, t.query)))
        for c in ck:
            per_dataset[c].append(float(np.mean(res[c])))
        line = " | ".join(f"{np.mean(v):.3f}" for v in res.values())
        print(f"| {name} | 32 | {len(next(iter(res.values())))} | {line} |", flush=True)
    print("mean", {c: round(float(np.mean(v)), 4) for c, v in per_dataset.items()})


if __name__ == "__main__":
    main()
