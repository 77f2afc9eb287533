"""ROC-AUC of the exported ``iforest`` candidate on the real datasets' units, beside the
``iforest`` detector (docs/real_data.md, "The iforest graph").

    python scripts/iforest_real_check.py --datasets digits --shots 32

Units as ``scripts/real_anomaly_table.py`` builds them (the same classes, seeds 0,1,2,
contamination 0.1). ``detector``: the ``iforest`` detector fitted on the whole support
(the table's column); ``candidate``: the exported term as ``adapt-and-export --candidates
all`` fits it (on the support minus the 20% threshold hold-out, model space of those fit
rows), scored through the torch term that the bundle's graph equals; ``pseudo > ensemble``:
the units where its label-free pseudo-anomaly score (the selection criterion, on the
hold-out) beat the ``ensemble`` candidate's. Labels are read only to score; nothing here
chooses anything.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits")
    ap.add_argument("--shots", default="32")
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--seeds", default="0,1,2")
    a = ap.parse_args()
    from sklearn.metrics import roc_auc_score

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from real_anomaly_table import mean_ci, pick_classes

    from metaae_edge.adapt import query_scores
    from metaae_edge.errors import DataError
    from metaae_edge.evaluate.detectors import DETECTORS
    from metaae_edge.pipeline.candidates import pseudo_anomalies, selection_score
    from metaae_edge.pipeline.detector_candidates import (
        ENSEMBLE_PARTS,
        _term,
        detector_result,
        ensemble_result,
    )
    from metaae_edge.pipeline.export import split_holdout
    from metaae_edge.tasks.realdata import REAL_DATASETS, real_task

    print("| dataset | S | units | iforest detector | iforest candidate (exported graph) | "
          "ensemble candidate | pseudo > ensemble |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in a.datasets.split(","):
        for shots in (int(s) for s in a.shots.split(",")):
            det, cand, ens, wins = [], [], [], 0
            for cls in pick_classes(REAL_DATASETS[name].normal_classes, a.classes):
                for seed in (int(s) for s in a.seeds.split(",")):
                    try:
                        task = real_task(name, cls, seed, shots, contamination=0.1)
                    except DataError:
                        break
                    y = task.query_labels
                    det.append(roc_auc_score(y, DETECTORS["iforest"].fit(
                        task.support, task.seed)(task.query)))
                    fit, hold = split_holdout(task, 0.2, 0)
                    norm = fit.normalizer()
                    z = norm.transform(fit.support).astype(np.float64)
                    zh = norm.transform(hold).astype(np.float64)
                    res = detector_result("iforest", _term("iforest", z, 0), norm, z.shape[1])
                    er = ensemble_result("ensemble", ENSEMBLE_PARTS, z, zh, norm, 0)
                    cand.append(roc_auc_score(y, query_scores(res, task.query)))
                    ens.append(roc_auc_score(y, query_scores(er, task.query)))
                    pseudo = pseudo_anomalies(zh, z, 0)
                    wins += selection_score(res, "anomaly", zh, pseudo) > selection_score(
                        er, "anomaly", zh, pseudo)
            if det:
                (m1, c1), (m2, c2), (m3, c3) = mean_ci(det), mean_ci(cand), mean_ci(ens)
                print(f"| {name} | {shots} | {len(det)} | {m1:.3f} ± {c1:.3f} | "
                      f"{m2:.3f} ± {c2:.3f} | {m3:.3f} ± {c3:.3f} | {wins} / {len(det)} |")


if __name__ == "__main__":
    main()
