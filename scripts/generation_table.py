"""Generation on held-out tasks: bundle samples (adapt-and-export, then ``Runtime.generate``
through decoder.onnx) against a Gaussian in input space and PCA sampling (PPCA), judged
by MMD^2 (RBF, median heuristic) and k-NN precision / recall (k = 3) against the task's
held-out rows (its query; never the support the bundle and the baselines were fitted on).

    python scripts/generation_table.py --families manifold,sensors,tabular,digits,wine,digits-res \
        --tasks 3

Each family: tasks 0..T-1 of its test split (real data ``wine``: normal class 0, seeds
0..T-1), seed = task index for adaptation, density and sampling. Prints a markdown table,
mean ± 95% t-interval over the tasks (docs/generation.md quotes it). ``ours`` adds the
bundle's residual noise model to the decoded samples, ``ours, decoded means`` does not.
``support rows`` is
the real support itself scored the same way: the level real data reaches.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from metaae_edge.evaluate.generation import (
    input_gaussian,
    median_bandwidth,
    pca_sampling,
    sample_metrics,
)

CHECKPOINTS = {"manifold": "manifold", "sensors": "sensors", "digits": "digits",
               "digits-res": "digits-res"}  # others: --checkpoint
METHODS = ("ours", "ours, decoded means", "input gaussian", "pca sampling", "support rows")


def _task(family: str, index: int):
    from metaae_edge.tasks import create_family
    from metaae_edge.tasks.realdata import real_task

    if family == "wine":
        return real_task("wine", normal=0, seed=index, n_support=32, objective="reconstruct")
    return create_family(family, seed=0).sample("test", index, objective="reconstruct")


def _unit(family: str, index: int, ckpt, candidates: str, temperature: float) -> dict:
    """Every method's metrics on one task, plus what the bundle holds."""
    from metaae_edge.pipeline.export import ExportOptions, adapt_and_export
    from metaae_edge.runtime import Runtime

    task = _task(family, index)
    with tempfile.TemporaryDirectory() as tmp:
        rep = adapt_and_export(ckpt, task, ExportOptions(out=Path(tmp) / "b", seed=index,
                                                         candidates=candidates))
        rt = Runtime.load(Path(tmp) / "b")
        n = len(task.query)
        ours = rt.generate(n, seed=index, temperature=temperature).reshape(n, -1)
        means = rt.generate(n, seed=index, temperature=temperature,
                            residual=False).reshape(n, -1)
        density = rt.manifest["density"]
    norm = task.normalizer()
    sup, held = norm.transform(task.support), norm.transform(task.query)
    pca, q = pca_sampling(sup, n, index)
    samples = {"ours": norm.transform(ours), "ours, decoded means": norm.transform(means),
               "input gaussian": input_gaussian(sup, n, index),
               "pca sampling": pca, "support rows": sup}
    bw = median_bandwidth(held)
    out = {m: sample_metrics(s, held, bw) for m, s in samples.items()}
    sel = rep.selection["selected"]["name"] if rep.selection else "ours"
    out["info"] = f"{sel} {rep.arch.split(' -> ')[1] if ' -> ' in rep.arch else rep.arch}, " \
                  f"gmm k={density['components']}, pca q={q}"
    return out


def _ci(v: list[float]) -> str:
    from scipy import stats

    a = np.asarray(v)
    h = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else 0
    return f"{a.mean():.4f} ± {h:.4f}"


def _rows(family: str, units: list[dict]) -> list[str]:
    rows = []
    for m in METHODS:
        vals = {k: [u[m][k] for u in units] for k in ("mmd2", "precision", "recall")}
        wins = "" if m != "ours" else str(sum(
            u["ours"]["mmd2"] < min(u["input gaussian"]["mmd2"], u["pca sampling"]["mmd2"])
            for u in units)) + f"/{len(units)}"
        rows.append(f"| {family} | {m} | {_ci(vals['mmd2'])} | {_ci(vals['precision'])} | "
                    f"{_ci(vals['recall'])} | {wins} |")
    return rows


def main() -> None:
    from metaae_edge.meta import load_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="manifold,sensors,tabular,digits,wine,digits-res")
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--checkpoint", default="builtin:manifold",
                    help="for families without a builtin checkpoint of their name")
    ap.add_argument("--candidates", default="auto", choices=("auto", "meta"))
    ap.add_argument("--temperature", type=float, default=1.0)
    args = ap.parse_args()
    lines = ["| family | method | MMD² (lower better) | precision | recall | ours best MMD² |",
             "| --- | --- | --- | --- | --- | --- |"]
    for family in args.families.split(","):
        name = CHECKPOINTS.get(family)
        ckpt = load_checkpoint(f"builtin:{name}" if name else args.checkpoint)
        t0 = time.perf_counter()
        units = [_unit(family, i, ckpt, args.candidates, args.temperature)
                 for i in range(args.tasks)]
        print(f"# {family}: {time.perf_counter() - t0:.0f} s; "
              + "; ".join(u["info"] for u in units), flush=True)
        rows = _rows(family, units)
        print("\n".join(rows), flush=True)
        lines += rows
    print("\n".join(lines))


if __name__ == "__main__":
    main()
