"""Design study for the generator on TRAIN-split tasks (never the test split): on the
bundles ``generation_table.py --split train --cache DIR`` exported, MMD^2 of ours' samples
for a grid of latent temperatures (``--temperatures``) and residual noise scales
(``--residual-scales``, the decoder's noise model multiplied by the scale), against the
task's held-out rows, and the ratio of the held-out to the support reconstruction
residual (mean squared, raw units): how much the support's own residual understates the
decoder's error on new rows; and the temperature ``choose_temperature`` picks on support
folds, with its MMD^2 minus T=1's (the grid must hold its choices, 0.9 / 1.0 / 1.1).

    python scripts/generation_design.py --cache DIR --families digits,tabular --tasks 10
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation_table import ci, task_for  # noqa: E402

from metaae_edge.evaluate.generation import median_bandwidth, mmd2  # noqa: E402


def unit(family: str, index: int, args) -> dict:
    """MMD^2 per (temperature, scale) and the residual ratio of one cached train task."""
    from metaae_edge.exporters.density import add_density
    from metaae_edge.runtime import Runtime
    from metaae_edge.runtime.density_temperature import choose_temperature
    from metaae_edge.runtime.generate import load_density

    task = task_for(family, "train", index)
    cached = Path(args.cache) / f"{family}-train-auto-{index}"
    norm = task.normalizer()
    held = norm.transform(task.query)
    bw = median_bandwidth(held)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(cached, Path(tmp) / "b")
        add_density(Path(tmp) / "b", task.support, seed=index)
        rt = Runtime.load(Path(tmp) / "b")
        sup_r = ((task.support - rt.reconstruct(task.support)) ** 2).mean()
        held_r = ((task.query - rt.reconstruct(task.query)) ** 2).mean()
        out["ratio"] = float(held_r / sup_r)
        density = dataclasses.replace(load_density(rt.bundle), info=rt.manifest["density"])
        out["chosen"] = choose_temperature(rt.encode(task.support), density, seed=index)[0]
        for t in args.temperatures:
            means = rt.generate(args.samples, seed=index, temperature=t, residual=False)
            noise = rt.generate(args.samples, seed=index, temperature=t) - means
            for s in args.residual_scales:
                x = norm.transform((means + s * noise).reshape(args.samples, -1))
                out[(t, s)] = mmd2(x, held, bw)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--families", default="manifold,sensors,tabular,digits,wine")
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--temperatures", type=lambda s: [float(v) for v in s.split(",")],
                    default=[0.8, 1.0, 1.2])
    ap.add_argument("--residual-scales", type=lambda s: [float(v) for v in s.split(",")],
                    default=[1.0, 1.1, 1.2, 1.35])
    args = ap.parse_args()
    for family in args.families.split(","):
        units = [unit(family, i, args) for i in range(args.tasks)]
        m, h = ci([u["ratio"] for u in units])
        print(f"# {family}: held-out / support residual MSE {m:.3f} ± {h:.3f}; "
              + " ".join(f"{u['ratio']:.2f}" for u in units))
        base = [u[(1.0, 1.0)] for u in units]
        if all((u["chosen"], 1.0) in u for u in units):
            dm, dh = ci([u[(u["chosen"], 1.0)] - b for u, b in zip(units, base)])
            print(f"# {family}: temperature chosen on support folds "
                  + " ".join(f"{u['chosen']:g}" for u in units)
                  + f"; MMD^2 minus T=1: {dm:+.4f} ± {dh:.4f}")
        for t, s in itertools.product(args.temperatures, args.residual_scales):
            m, h = ci([u[(t, s)] for u in units])
            dm, dh = ci([u[(t, s)] - b for u, b in zip(units, base)])
            print(f"| {family} | T={t:g} | scale={s:g} | {m:.4f} ± {h:.4f} | "
                  f"{dm:+.4f} ± {dh:.4f} |", flush=True)


if __name__ == "__main__":
    main()
