"""Generation on held-out tasks: bundle samples (adapt-and-export, then ``Runtime.generate``
through decoder.onnx) against a Gaussian in input space and PCA sampling (PPCA), judged
by MMD^2 (RBF, median heuristic) and k-NN precision / recall (k = 3) against the task's
held-out rows (its query; never the support the bundle and the baselines were fitted on).

    python scripts/generation_table.py --families manifold,sensors,tabular,digits,wine \
        --tasks 20 --samples 1024 --cache /tmp/gen-cache

Each family: tasks 0..T-1 of its ``--split`` (real data ``wine``: test = normal class 0,
train = normal class 1, seeds 0..T-1), seed = task index for adaptation, density and
sampling. ``--samples N``: N rows per generated method against all held-out rows
(unbiased MMD^2 allows unequal sizes; 0: as many as the task has held-out rows). Prints a
markdown table, mean ± 95% t-interval over the tasks, then the paired differences of
ours' MMD^2 minus each baseline's per task (mean ± 95% t-interval; ``*``: the interval
excludes 0). ``ours`` adds the bundle's residual noise model to the decoded samples,
``ours, decoded means`` does not. ``support rows`` is the real support itself scored the
same way: the level real data reaches (its precision / recall are at the support's size,
not comparable with N generated rows).

``--cache DIR`` keeps each exported bundle (DIR/FAMILY-SPLIT-CANDIDATES-INDEX); a cached
bundle is reused with its density refitted by the current code (``add_density`` on a
copy, the same fit adapt-and-export stages), so density changes are measured on the same
adapted models (``--residual pooled``: the density of bundles before session 27, one
pooled residual; ``--blend on``: with session 28's input-space Gaussian, not the default;
``--location off``: without session 30's location prior, the default of adapt-and-export,
whose ``on`` also scores the ablation ``input gaussian + shrinkage``, the input-space
baseline moved by the same prior; ``--factor on``: session 30 (b)'s factor-analysis
residual; ``--digits-prior on``: with ``--location on``, digits bundles take session 31's
structured location prior, ``metaae_edge/runtime/density_digits.py``, and the ablation
moves the input gaussian by its shift).
``--json FILE`` writes every task's metrics.
"""

from __future__ import annotations

import argparse
import json
import shutil
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
from metaae_edge.exporters.density import DIGITS_PRIOR_FILE, PRIORS_FILE

CHECKPOINTS = {"manifold": "manifold", "sensors": "sensors", "digits": "digits",
               "digits-res": "digits-res"}  # others: --checkpoint
METHODS = ("ours", "ours, decoded means", "input gaussian", "pca sampling", "support rows")
BASELINES = ("input gaussian", "pca sampling")
SHRUNK = "input gaussian + shrinkage"  # the ablation of --location on (not a baseline)
WINE_NORMAL = {"test": 0, "train": 1}


def task_for(family: str, split: str, index: int):
    """Task ``index`` of ``family``'s ``split`` (wine: normal class by split)."""
    from metaae_edge.tasks import create_family
    from metaae_edge.tasks.realdata import real_task

    if family == "wine":
        return real_task("wine", normal=WINE_NORMAL[split], seed=index, n_support=32,
                         objective="reconstruct")
    return create_family(family, seed=0).sample(split, index, objective="reconstruct")


def bundle_for(task, ckpt, index: int, candidates: str, cached: Path | None,
               tmp: Path, per_component: bool = True, blend: bool = True,
               location: str | None = None, factor: bool = False,
               digits: str | None = None) -> tuple[Path, str]:
    """``(bundle, selected model)``: exported into ``cached`` once, then reused with its
    density refitted (on a copy under ``tmp``); without a cache, exported under ``tmp``."""
    from metaae_edge.exporters.density import add_density
    from metaae_edge.pipeline.export import ExportOptions, adapt_and_export

    if cached is None or not (cached / "manifest.json").exists():
        out = tmp / "b" if cached is None else cached
        rep = adapt_and_export(ckpt, task, ExportOptions(out=out, seed=index,
                                                         candidates=candidates))
        sel = rep.selection["selected"]["name"] if rep.selection else "ours"
        (out / "selected.txt").write_text(sel)  # not a bundle file: loaders ignore it
        if cached is None:
            return out, sel
    sel = (cached / "selected.txt").read_text()
    shutil.copytree(cached, tmp / "b")
    add_density(tmp / "b", task.support, seed=index, per_component=per_component,
                blend=blend, location=location, factor=factor, digits=digits)
    return tmp / "b", sel


def unit(family: str, split: str, index: int, ckpt, args) -> dict:
    """Every method's metrics on one task, plus what the bundle holds."""
    from metaae_edge.runtime import Runtime

    task = task_for(family, split, index)
    cached = None if args.cache is None else \
        Path(args.cache) / f"{family}-{split}-{args.candidates}-{index}"
    n_held = len(task.query)
    n = args.samples or n_held
    with tempfile.TemporaryDirectory() as tmp:
        path, sel = bundle_for(task, ckpt, index, args.candidates, cached, Path(tmp),
                               args.residual == "component", args.blend == "on",
                               args.priors if args.location == "on" else None,
                               args.factor == "on", _digits(args))
        rt = Runtime.load(path)
        ours = rt.generate(n, seed=index, temperature=args.temperature).reshape(n, -1)
        means = rt.generate(n, seed=index, temperature=args.temperature,
                            residual=False).reshape(n, -1)
        density = rt.manifest["density"]
    norm = task.normalizer()
    sup, held = norm.transform(task.support), norm.transform(task.query)
    pca, q = pca_sampling(sup, n, index)
    samples = {"ours": norm.transform(ours), "ours, decoded means": norm.transform(means),
               "input gaussian": input_gaussian(sup, n, index),
               "pca sampling": pca, "support rows": sup}
    if args.location == "on":  # the ablation: the baseline moved by the same prior
        samples[SHRUNK] = samples["input gaussian"] + prior_shift(task, norm, args.priors,
                                                                  index, _digits(args))
    bw = median_bandwidth(held)
    out = {m: sample_metrics(s, held, bw) for m, s in samples.items()}
    extra = "".join(f", {k}={density[k]}" for k in ("residual_prior_rows",
                                                     "residual_factor_rank", "temperature",
                                                         "input_weight", "location_prior")
                    if k in density)
    out["info"] = f"{sel} k={density['components']}{extra}, pca q={q}"
    return out


def _digits(args) -> str | None:
    """The structured digits prior's file when ``--location on --digits-prior on``."""
    return args.digits_file if args.location == "on" and args.digits_prior == "on" else None


def prior_shift(task, norm, priors: str, seed: int, digits: str | None = None) -> np.ndarray:
    """The location prior's shift of ``task``'s support in its model space (0: none)."""
    from metaae_edge.runtime.density_digits import digits_shift, load_digits_prior
    from metaae_edge.runtime.density_location import load_priors, posterior_shift

    x = np.asarray(task.support, np.float64).reshape(len(task.support), -1)
    if task.family == "digits" and digits is not None and x.shape[1] == 64:
        shift = digits_shift(x, load_digits_prior(digits))
    else:
        prior = load_priors(priors).get(task.family, {}).get(x.shape[1])
        shift = None if prior is None else posterior_shift(x, prior, seed)
    if shift is None:
        return np.zeros(x.shape[1])
    mean = x.mean(0, keepdims=True)
    return (norm.transform((mean + shift).astype(np.float32))
            - norm.transform(mean.astype(np.float32))).reshape(-1)


def ci(v: list[float]) -> tuple[float, float]:
    """``(mean, half-width of the 95% t-interval)``."""
    from scipy import stats

    a = np.asarray(v, np.float64)
    h = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 \
        else 0.0
    return float(a.mean()), float(h)


def _fmt(v: list[float]) -> str:
    m, h = ci(v)
    return f"{m:.4f} ± {h:.4f}"


def rows(family: str, units: list[dict]) -> list[str]:
    out = []
    for m in METHODS + ((SHRUNK,) if SHRUNK in units[0] else ()):
        vals = {k: [u[m][k] for u in units] for k in ("mmd2", "precision", "recall")}
        wins = "" if m != "ours" else str(sum(
            u["ours"]["mmd2"] < min(u[b]["mmd2"] for b in BASELINES)
            for u in units)) + f"/{len(units)}"
        out.append(f"| {family} | {m} | {_fmt(vals['mmd2'])} | {_fmt(vals['precision'])} | "
                   f"{_fmt(vals['recall'])} | {wins} |")
    return out


def paired_row(family: str, units: list[dict]) -> str:
    """``| family | ours - input gaussian | ours - pca sampling | tasks |`` (MMD^2); with
    ``--location on`` also ``ours - input gaussian + shrinkage``."""
    cells = []
    for b in BASELINES + ((SHRUNK,) if SHRUNK in units[0] else ()):
        m, h = ci([u["ours"]["mmd2"] - u[b]["mmd2"] for u in units])
        sig = " *" if abs(m) > h else ""
        cells.append(f"{m:+.4f} ± {h:.4f}{sig}")
    return f"| {family} | {' | '.join(cells)} | {len(units)} |"


def main() -> None:
    from metaae_edge.meta import load_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="manifold,sensors,tabular,digits,wine")
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--samples", type=int, default=0,
                    help="generated rows per method (0: as many as held-out rows)")
    ap.add_argument("--checkpoint", default="builtin:manifold",
                    help="for families without a builtin checkpoint of their name")
    ap.add_argument("--candidates", default="auto", choices=("auto", "meta"))
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--residual", default="component", choices=("component", "pooled"),
                    help="cached bundles: refit per-component residuals, or pooled only")
    ap.add_argument("--blend", default="off", choices=("on", "off"),
                    help="cached bundles: on refits the density with session 28's "
                         "input-space Gaussian (not the default)")
    ap.add_argument("--location", default="on", choices=("on", "off"),
                    help="cached bundles: on (the default since session 30) refits the "
                         "density with the location prior (and scores the input gaussian "
                         "moved by it); off: without it")
    ap.add_argument("--factor", default="off", choices=("on", "off"),
                    help="cached bundles: on refits the density with session 30 (b)'s "
                         "factor-analysis residual (rank by held-out likelihood)")
    ap.add_argument("--digits-prior", default="on", choices=("on", "off"),
                    help="with --location on: digits bundles take session 31's structured "
                         "location prior (on: adapt-and-export's default since session 31)")
    ap.add_argument("--priors", default=str(PRIORS_FILE), help="location-priors JSON")
    ap.add_argument("--digits-file", default=str(DIGITS_PRIOR_FILE),
                    help="the structured digits prior's JSON")
    ap.add_argument("--cache", default=None, help="folder of exported bundles to reuse")
    ap.add_argument("--json", default=None, help="write every task's metrics here")
    args = ap.parse_args()
    lines = ["| family | method | MMD² (lower better) | precision | recall | ours best MMD² |",
             "| --- | --- | --- | --- | --- | --- |"]
    extra = f" ours − {SHRUNK} |" if args.location == "on" else ""
    paired = ["| family | ours − input gaussian | ours − pca sampling |" + extra + " tasks |",
              "| --- | --- | --- |" + (" --- |" if extra else "") + " --- |"]
    dump = {}
    for family in args.families.split(","):
        name = CHECKPOINTS.get(family)
        ckpt = load_checkpoint(f"builtin:{name}" if name else args.checkpoint)
        t0 = time.perf_counter()
        units = [unit(family, args.split, i, ckpt, args) for i in range(args.tasks)]
        print(f"# {family}: {time.perf_counter() - t0:.0f} s; "
              + "; ".join(u["info"] for u in units), flush=True)
        new = rows(family, units)
        lines += new
        paired.append(paired_row(family, units))
        print("\n".join(new + [paired[-1]]), flush=True)
        dump[family] = units
    print("\n".join(lines + [""] + paired))
    if args.json:
        Path(args.json).write_text(json.dumps(dump, indent=1))


if __name__ == "__main__":
    main()
