"""Diagnosis on TRAIN-split tasks (never the test split): how much of each method's MMD^2
is the support mean's sampling error, which every density fitted on the support shares,
and how much two seeds of ours differ at N samples.

For each cached train bundle (``generation_table.py --split train --cache DIR``): MMD^2
against the held-out rows of ours (the density ``add_density`` fits now, two seeds), the
input Gaussian and PCA sampling, each also re-centred by the held-out minus support mean
(uses the held-out mean: a diagnosis, never a choice), and ||mean shift||^2 / bandwidth^2.

    python scripts/generation_floor.py --cache DIR --families manifold,sensors,digits \
        --tasks 8 --samples 1024
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation_table import ci, task_for  # noqa: E402

from metaae_edge.evaluate.generation import (  # noqa: E402
    input_gaussian,
    median_bandwidth,
    mmd2,
    pca_sampling,
)


def unit(family: str, i: int, args) -> dict[str, float]:
    from metaae_edge.exporters.density import add_density
    from metaae_edge.runtime import Runtime

    task = task_for(family, "train", i)
    norm = task.normalizer()
    sup, held = norm.transform(task.support), norm.transform(task.query)
    bw, n = median_bandwidth(held), args.samples
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(Path(args.cache) / f"{family}-train-auto-{i}", Path(tmp) / "b")
        add_density(Path(tmp) / "b", task.support, seed=i)
        rt = Runtime.load(Path(tmp) / "b")
        sets = {"ours": rt.generate(n, seed=i),
                "ours, seed + 1000": rt.generate(n, seed=i + 1000)}
    sets = {k: norm.transform(v.reshape(n, -1)) for k, v in sets.items()}
    sets.update({"input gaussian": input_gaussian(sup, n, i),
                 "pca sampling": pca_sampling(sup, n, i)[0]})
    shift = held.mean(0) - sup.mean(0)
    out = {"mean shift^2 / bw^2": float((shift ** 2).sum() / bw ** 2)}
    for k, x in sets.items():
        out[k] = mmd2(x, held, bw)
        out[k + ", re-centred"] = mmd2(x + shift, held, bw)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--families", default="manifold,sensors,digits")
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--samples", type=int, default=1024)
    args = ap.parse_args()
    print("| family | quantity | MMD² | minus ours |\n| --- | --- | --- | --- |")
    for family in args.families.split(","):
        units = [unit(family, i, args) for i in range(args.tasks)]
        for k in units[0]:
            m, h = ci([u[k] for u in units])
            dm, dh = ci([u[k] - u["ours"] for u in units])
            print(f"| {family} | {k} | {m:.4f} ± {h:.4f} | {dm:+.4f} ± {dh:.4f} |",
                  flush=True)


if __name__ == "__main__":
    main()
