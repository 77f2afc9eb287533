"""Settings of the ``pca+residual`` candidate checked on TRAIN-split family tasks only.

For 8 train tasks per family at S = 256, Q fixed per family (sensors 8, manifold 12,
tabular 16, capped at D - 1), the candidate alone (no selection) fitted on the support:
ratio of mean query MSE to PCA-Q's. Prints one line per family.

    python scripts/residual_train_check.py --families sensors,tabular,manifold
"""

from __future__ import annotations

import argparse

import numpy as np

CONFIGS = {"h64": {"hidden": 64}, "h128": {"hidden": 128},
           "h64-lr1e-2": {"hidden": 64, "lr": 1e-2},
           "h128-3000steps": {"hidden": 128, "steps": 3000}}
Q = {"sensors": 8, "manifold": 12, "tabular": 16}


def _pca_mse(z: np.ndarray, zq: np.ndarray, q: int) -> float:
    m = z.mean(0)
    v = np.linalg.svd(z - m, full_matrices=False)[2][:q]
    return float((((zq - m) @ v.T @ v + m - zq) ** 2).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="sensors,tabular,manifold")
    ap.add_argument("--tasks", type=int, default=8)
    args = ap.parse_args()
    import torch

    from metaae_edge.pipeline.residual_candidate import fit_residual
    from metaae_edge.tasks import create_family

    torch.set_num_threads(1)
    for fam in args.families.split(","):
        family = create_family(fam, seed=0)
        res: dict[str, list[float]] = {k: [] for k in CONFIGS}
        pca = []
        for i in range(args.tasks):
            t = family.sample("train", i, n_support=256)
            n = t.normalizer()
            z, zq = (n.transform(a).astype(np.float64) for a in (t.support, t.query))
            q = min(Q.get(fam, 12), z.shape[1] - 1)
            pca.append(_pca_mse(z, zq, q))
            x = torch.as_tensor(zq, dtype=torch.float32)
            for k, kw in CONFIGS.items():
                model, _ = fit_residual(z, q, **kw)
                with torch.no_grad():
                    res[k].append(float(((model(x)[0] - x) ** 2).mean()))
        ratios = {k: round(float(np.mean(v) / np.mean(pca)), 3) for k, v in res.items()}
        print(fam, ratios, flush=True)


if __name__ == "__main__":
    main()
