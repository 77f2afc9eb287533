"""Diagnosis of the generator on TRAIN-split tasks (never the test split), on the bundles
``generation_table.py --split train --cache DIR`` exported: MMD^2 against the task's
held-out rows of

* ``gmm``: the shipped density (``add_density``: latent mixture, residual, temperature);
* ``kde h=H``: a Gaussian kernel density over the support's latent codes, kernel
  covariance H^2 x the codes' covariance (shrunk towards its diagonal), decoded through
  the bundle's decoder plus the shipped residual noise (``h=0``: the support's own
  reconstructions plus noise, the decoder's floor);
* ``support rows``: the support itself (what real rows reach at that size);

``bootstrap support`` (support rows drawn with replacement: the empirical distribution, the
level of a density that only copies the support) and ``mix W gmm + B``: a share W of
ours' rows, the rest from baseline B (the input-space blend, measured before it was
built). Also the nearest-support-row distance of each method's samples over the
held-out rows' one (memorisation check: below 1, samples sit closer to support rows than
new real rows do).

    python scripts/generation_kde_design.py --cache DIR --families manifold --tasks 8
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation_table import ci, task_for  # noqa: E402

from metaae_edge.evaluate.generation import (  # noqa: E402
    input_gaussian,
    median_bandwidth,
    mmd2,
    pca_sampling,
)

HS = (0.0, 0.2, 0.35)
WS = (0.25, 0.5, 0.75)


def _nn_ratio(x: np.ndarray, sup: np.ndarray, held: np.ndarray) -> float:
    def nn(a):
        d = (a * a).sum(1)[:, None] + (sup * sup).sum(1)[None] - 2 * a @ sup.T
        return np.sqrt(np.maximum(d, 0).min(1))
    return float(np.median(nn(x)) / np.median(nn(held)))


def _kernel_chol(x: np.ndarray) -> np.ndarray:
    c = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])
    c = 0.7 * c + 0.3 * np.diag(np.diag(c)) + 1e-9 * np.eye(len(c))
    return np.linalg.cholesky(c)


def unit(family: str, index: int, args) -> dict:
    from metaae_edge.exporters.density import add_density
    from metaae_edge.runtime import Runtime
    from metaae_edge.runtime.generate import load_density

    task = task_for(family, args.split, index)
    cached = Path(args.cache) / f"{family}-{args.split}-auto-{index}"
    norm = task.normalizer()
    sup_n, held = norm.transform(task.support), norm.transform(task.query)
    bw = median_bandwidth(held)
    n, rng = args.samples, np.random.default_rng(index)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(cached, Path(tmp) / "b")
        add_density(Path(tmp) / "b", task.support, seed=index)
        rt = Runtime.load(Path(tmp) / "b")
        dens = load_density(rt.bundle)
        sets = {"gmm": rt.generate(n, seed=index).reshape(n, -1)}
        codes = rt.encode(task.support).reshape(len(task.support), -1).astype(np.float64)
        lz = _kernel_chol(codes)
        pick = rng.integers(len(codes), size=n)
        eps = rng.standard_normal((n, codes.shape[1]))
        noise = dens.residual_noise(n, rng)
        for h in HS:
            z = codes[pick] + h * eps @ lz.T
            x = rt.decode(z.reshape(n, *dens.latent_shape).astype(np.float32))
            sets[f"kde h={h:g}"] = x.reshape(n, -1) + noise
        sets["bootstrap support"] = np.asarray(task.support, np.float64)[pick]
    sets = {k: norm.transform(v) for k, v in sets.items()}
    sets["input gaussian"] = input_gaussian(sup_n, n, index)
    sets["pca sampling"] = pca_sampling(sup_n, n, index)[0]
    for w in WS:
        m = int(round(w * n))
        for b in ("input gaussian", "pca sampling"):
            sets[f"mix {w:g} gmm + {b}"] = np.concatenate([sets["gmm"][:m], sets[b][m:]])
    for name, xn in sets.items():
        out[name] = (mmd2(xn, held, bw), _nn_ratio(xn, sup_n, held))
    out["support rows"] = (mmd2(sup_n, held, bw), 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--families", default="manifold,sensors,digits")
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--split", default="train", choices=("train",))
    ap.add_argument("--samples", type=int, default=1024)
    args = ap.parse_args()
    for family in args.families.split(","):
        units = [unit(family, i, args) for i in range(args.tasks)]
        for name in units[0]:
            m, h = ci([u[name][0] for u in units])
            dm, dh = ci([u[name][0] - u["gmm"][0] for u in units])
            r = np.mean([u[name][1] for u in units])
            print(f"| {family} | {name} | {m:.4f} ± {h:.4f} | {dm:+.4f} ± {dh:.4f} | "
                  f"{r:.2f} |", flush=True)


if __name__ == "__main__":
    main()
