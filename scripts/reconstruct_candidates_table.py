"""Reconstruction on held-out family tasks: the meta-learned model alone, with the
closed-form candidates (``adapt-and-export --candidates auto``), and PCA at ours' latent
size, as query MSE in model space (the support's standardisation), mean ± 95% t-interval.

    python scripts/reconstruct_candidates_table.py --families manifold,sensors,tabular \
        --tasks 10 --shots 32,256

Prints a markdown table (docs/real_data.md quotes it). The query is only used to score.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _mse(result, x_raw: np.ndarray) -> float:
    import torch

    z = result.normalizer.transform(x_raw).astype(np.float32)
    with torch.no_grad():
        recon = result.model(torch.from_numpy(z))[0].numpy()
    return float(((recon - z) ** 2).mean())


def _pca_mse(task, latent: int) -> float:
    from sklearn.decomposition import PCA

    norm = task.normalizer()
    zs, zq = norm.transform(task.support), norm.transform(task.query)
    pca = PCA(n_components=min(latent, *zs.shape)).fit(zs)
    return float(((pca.inverse_transform(pca.transform(zq)) - zq) ** 2).mean())


def _unit(ckpt, task, seed: int) -> tuple[float, float, float, str]:
    from metaae_edge.adapt import adapt
    from metaae_edge.pipeline.candidates import compete

    ours = adapt(ckpt, task, seed=seed)
    comp = compete(lambda t: adapt(ckpt, t, seed=seed), task, None, "reconstruct", 0.2, seed)
    winner = comp.selection["selected"]["name"] if comp.selection else "ours"
    return (_mse(ours, task.query), _mse(comp.winner, task.query),
            _pca_mse(task, ours.spec.latent_dim), winner)


def _ci(v: list[float]) -> str:
    from scipy import stats

    a = np.asarray(v)
    h = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else 0
    return f"{a.mean():.4f} ± {h:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="manifold,sensors,tabular")
    ap.add_argument("--checkpoint", default="builtin:manifold",
                    help="builtin:FAMILY of the same name where one exists, else this")
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--shots", default="32,256")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    from metaae_edge.meta import load_checkpoint
    from metaae_edge.meta.checkpoint import builtin_checkpoints
    from metaae_edge.tasks import create_family

    torch.set_num_threads(1)
    shipped = set(builtin_checkpoints())
    print("| family | S | tasks | ours (meta) | ours + candidates | PCA at ours' latent | "
          "ours+cand / PCA | picked |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for fam in args.families.split(","):
        ckpt = load_checkpoint(f"builtin:{fam}" if fam in shipped else args.checkpoint)
        family = create_family(fam, seed=args.seed)
        for s in (int(v) for v in args.shots.split(",")):
            t0, rows = time.perf_counter(), []
            for i in range(args.tasks):
                task = family.sample("test", i, objective="reconstruct", n_support=s)
                rows.append(_unit(ckpt, task, args.seed))
            ours, cand, pca, picked = zip(*rows, strict=True)
            ratio = np.mean(cand) / np.mean(pca)
            names = ", ".join(f"{n} {picked.count(n)}" for n in sorted(set(picked)))
            print(f"| {fam} | {s} | {args.tasks} | {_ci(ours)} | {_ci(cand)} | {_ci(pca)} | "
                  f"{ratio:.2f} | {names} |  <!-- {time.perf_counter() - t0:.0f} s -->",
                  flush=True)


if __name__ == "__main__":
    main()
