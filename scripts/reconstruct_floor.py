"""How low can reconstruction go on a family task? The noise floor and oracle models.

For test tasks (indices from ``--first``, by default 100.., kept apart from the indices
0..9 the candidates table scores) at S support rows, in the support's model space, at Q =
the meta-learned model's latent size (the latent the issue compares PCA at):

- ``PCA (S)``: PCA-Q fitted on the S support rows (the issue's reference), query MSE;
- ``noise``: the query's generator noise alone in model space (the same task drawn with the
  family's noise set to 0: identical streams, so ``x - x_clean`` is the exact noise; for
  ``tabular`` the noise passes through skew / discretisation, so it is what is left of it);
  ``floor`` (approximate): the sum of the D - Q smallest eigenvalues of the noise's
  covariance / D, what a Q-dim code reconstructing the clean signal exactly still pays if
  it keeps the Q largest noise directions too (isotropic noise: ``noise x (D - Q) / D``);
  Q is capped at D - 1 as the PCA candidates are (``Q`` shows ``capped (ours)``);
- ``PCA (N)``: PCA-Q fitted on N = 10,000 fresh rows of the same task (linear oracle);
- ``oracle``: PCA-Q code + MLP decoder correction (``pca+residual``, hidden 256) trained on
  the N rows, early stopping on 2,000 further rows; never on the query;
- ``cand (S)``: the same candidate fitted on the S support rows only (inner split).

    python scripts/reconstruct_floor.py --families manifold,sensors,tabular --tasks 3 --shots 256
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _clean_family(fam: str, seed: int):
    """The family with its generator noise off and every random stream unchanged."""
    from metaae_edge.tasks import create_family

    if fam in ("manifold", "sensors"):
        return create_family(fam, seed=seed, noise_frac=0.0)
    from metaae_edge.tasks.tabular import TabularFamily

    class Clean(TabularFamily):
        def _table(self, rs):
            tab = super()._table(rs)
            calibrate = tab.calibrate

            def cal(ref, rng):  # the reference rows (bins) keep their noise
                calibrate(ref, rng)
                tab.noise = 0.0

            tab.calibrate = cal
            return tab

    return Clean(seed=seed)


def _pca_mse(zfit: np.ndarray, zq: np.ndarray, q: int) -> float:
    mean = zfit.mean(axis=0)
    v = np.linalg.svd(zfit - mean, full_matrices=False)[2][:q]
    r = (zq - mean) @ v.T @ v + mean
    return float(((r - zq) ** 2).mean())


def _model_mse(model, zq: np.ndarray) -> float:
    import torch

    x = torch.as_tensor(zq, dtype=torch.float32)
    with torch.no_grad():
        return float(((model(x)[0] - x) ** 2).mean())


def _unit(ckpt, family, clean, i: int, s: int, n_big: int, seed: int) -> dict:
    from metaae_edge.adapt import adapt
    from metaae_edge.pipeline.residual_candidate import fit_residual

    task = family.sample("test", i, n_support=s)
    q0 = adapt(ckpt, task, seed=seed).spec.latent_dim
    q = min(q0, task.support.shape[1] - 1)  # PCA at Q >= D is exact: capped as candidates do
    norm = task.normalizer()
    zs, zq = (norm.transform(a).astype(np.float64) for a in (task.support, task.query))
    noise = zq - norm.transform(clean.sample("test", i, n_support=s).query)
    d = zq.shape[1]
    big = family.sample("test", i, n_support=n_big + 2000, n_query=1).support
    zb = norm.transform(big).astype(np.float64)
    oracle, info = fit_residual(zb[:n_big], q, hidden=256, steps=4000, lr=1e-3, batch=512,
                                val_z=zb[n_big:], seed=seed, every=50, weight_decay=0.0)
    cand, cinfo = fit_residual(zs, q, seed=seed)
    return {"q": q if q == q0 else f"{q} ({q0})", "d": d, "k": task.info.get("intrinsic_dim"),
            "pca_s": _pca_mse(zs, zq, q), "noise": float((noise ** 2).mean()),
            "floor": float(np.sort(np.linalg.eigvalsh(noise.T @ noise / len(noise)))[:d - q]
                           .sum() / d),
            "pca_n": _pca_mse(zb[:n_big], zq, q), "oracle": _model_mse(oracle, zq),
            "oracle_step": info["best_step"], "cand": _model_mse(cand, zq),
            "cand_step": cinfo["best_step"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="manifold,sensors,tabular")
    ap.add_argument("--checkpoint", default="builtin:manifold")
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--first", type=int, default=100)
    ap.add_argument("--shots", default="256")
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    from metaae_edge.meta import load_checkpoint
    from metaae_edge.meta.checkpoint import builtin_checkpoints
    from metaae_edge.tasks import create_family

    torch.set_num_threads(1)
    shipped = set(builtin_checkpoints())
    print("| family | task | S | D | k | Q | PCA (S) | noise | floor | PCA (N) | oracle | "
          "cand (S) | floor / PCA | oracle / PCA | cand / PCA |")
    print("| " + " | ".join(["---"] * 15) + " |")
    for fam in args.families.split(","):
        ckpt = load_checkpoint(f"builtin:{fam}" if fam in shipped else args.checkpoint)
        family, clean = create_family(fam, seed=args.seed), _clean_family(fam, args.seed)
        for s in (int(v) for v in args.shots.split(",")):
            for i in range(args.first, args.first + args.tasks):
                t0 = time.perf_counter()
                r = _unit(ckpt, family, clean, i, s, args.rows, args.seed)
                p = r["pca_s"]

                def ratio(v, p=p):  # PCA ~0 (Q near D, constant columns): no ratio
                    return f"{v / p:.2f}" if p > 1e-8 else "n/a"

                print(f"| {fam} | {i} | {s} | {r['d']} | {r['k']} | {r['q']} | {p:.4f} | "
                      f"{r['noise']:.4f} | {r['floor']:.4f} | {r['pca_n']:.4f} | "
                      f"{r['oracle']:.4f} | {r['cand']:.4f} | {ratio(r['floor'])} | "
                      f"{ratio(r['oracle'])} | {ratio(r['cand'])} |  <!-- steps "
                      f"{r['oracle_step']}/{r['cand_step']}, "
                      f"{time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
