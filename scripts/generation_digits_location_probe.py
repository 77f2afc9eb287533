"""Session 30 (b) probe, val split only (never test): how far would a *structured* digits
location prior take ours' MMD^2? Every generated row is moved by (m - support mean), m the
train pool's class means under the task's augmentation, weighted by the support's class
proportions; ``+ half``: half that move; ``input gaussian + prior``: the baseline moved the
same way. It reads the task's ground-truth classes and augmentation (``task.info``), which
a real prior would have to infer from the support: an upper bound, not a method.

    python scripts/generation_digits_location_probe.py --tasks 12 --cache /tmp/r30-b18b/valcache

``--knobs``: instead, ours + prior with one knob of the density forced at a time
(``generation_factor_study.py``'s knobs; ``rank 0`` is the shipped density), minus the
shipped one and minus the input Gaussian + prior: the density's shape once the location
is (oracle-)fixed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation_table import bundle_for, ci  # noqa: E402

METHODS = ("ours", "ours + prior", "ours + half", "input gaussian", "pca sampling",
           "input gaussian + prior")


def _prior_mean(task) -> np.ndarray:
    """The train pool's augmented class means, weighted by the support's classes."""
    from metaae_edge.tasks.digits import _augment, _load, digits_pool

    images, targets = _load()
    pool = digits_pool("train")
    info, aug = task.info, task.info["augmentation"]
    sup_cls = targets[np.asarray(info["support_indices"])]
    m = np.zeros(64)
    for c in info["classes"]:
        cls = images[pool[targets[pool] == c]].copy()
        m += np.mean(sup_cls == c) * _augment(cls, aug["flip"], aug["dy"], aug["dx"],
                                              aug["gamma"]).mean(0)
    return m


def _task(i: int, ckpt, cache: Path, n: int) -> dict[str, float]:
    from metaae_edge.evaluate.generation import (
        input_gaussian,
        median_bandwidth,
        pca_sampling,
        sample_metrics,
    )
    from metaae_edge.runtime import Runtime
    from metaae_edge.tasks import create_family

    task = create_family("digits", seed=0).sample("val", i, objective="reconstruct")
    x = np.asarray(task.support, np.float64)
    shift = _prior_mean(task) - x.mean(0)
    with tempfile.TemporaryDirectory() as tmp:
        path, _ = bundle_for(task, ckpt, i, "auto", cache / f"digits-val-auto-{i}",
                             Path(tmp), location=None)
        ours = Runtime.load(path).generate(n, seed=i).reshape(n, -1)
    norm = task.normalizer()
    t = lambda a: norm.transform(np.asarray(a, np.float32))  # noqa: E731
    sup, held = t(task.support), t(task.query)
    ig = input_gaussian(sup, n, i)
    mean = x.mean(0, keepdims=True)
    moved = (t(mean + shift) - t(mean)).reshape(-1)
    samples = (t(ours), t(ours + shift), t(ours + shift / 2), ig, pca_sampling(sup, n, i)[0],
               ig + moved)
    bw = median_bandwidth(held)
    return {m: sample_metrics(s, held, bw)["mmd2"] for m, s in zip(METHODS, samples)}


VARIANTS = (("rank", 0.0), ("rank", 16.0), ("residual x", 1.5), ("temperature x", 1.2),
            ("one component", 1), ("prior rows", 2.0))


def _knobs(i: int, ckpt, cache: Path, n: int) -> dict:
    """Ours + prior under each of :data:`VARIANTS`, and the input Gaussian + prior."""
    from generation_factor_study import _patch

    from metaae_edge.evaluate.generation import input_gaussian, median_bandwidth, sample_metrics
    from metaae_edge.runtime import Runtime
    from metaae_edge.tasks import create_family

    task = create_family("digits", seed=0).sample("val", i, objective="reconstruct")
    x = np.asarray(task.support, np.float64)
    shift = _prior_mean(task) - x.mean(0)
    norm = task.normalizer()
    t = lambda a: norm.transform(np.asarray(a, np.float32))  # noqa: E731
    held = t(task.query)
    bw = median_bandwidth(held)
    mean = x.mean(0, keepdims=True)
    moved = (t(mean + shift) - t(mean)).reshape(-1)
    out = {"input gaussian + prior": sample_metrics(
        input_gaussian(t(task.support), n, i) + moved, held, bw)["mmd2"]}
    for v in VARIANTS:
        temp = _patch(*v)
        with tempfile.TemporaryDirectory() as tmp:
            path, _ = bundle_for(task, ckpt, i, "auto", cache / f"digits-val-auto-{i}",
                                 Path(tmp), location=None, factor=True)
            ours = Runtime.load(path).generate(n, seed=i, temperature=temp).reshape(n, -1)
        out[v] = sample_metrics(t(ours + shift), held, bw)["mmd2"]
    return out


def _print_knobs(runs: list[dict]) -> None:
    print("| ours + prior, knob | MMD² | minus shipped | minus input gaussian + prior |")
    print("| --- | --- | --- | --- |")
    for v in VARIANTS:
        cells = [ci([r[v] for r in runs])] + [ci([r[v] - r[b] for r in runs])
                                              for b in (VARIANTS[0], "input gaussian + prior")]
        print(f"| {v[0]} {v[1]:g} | {cells[0][0]:.4f} ± {cells[0][1]:.4f} | "
              + " | ".join(f"{c[0]:+.4f} ± {c[1]:.4f}" + (" *" if abs(c[0]) > c[1] else "")
                           for c in cells[1:]) + " |")


def main() -> None:
    from metaae_edge.meta import load_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=12)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--knobs", action="store_true")
    a = ap.parse_args()
    ckpt = load_checkpoint("builtin:digits")
    if a.knobs:
        _print_knobs([_knobs(i, ckpt, Path(a.cache), a.samples) for i in range(a.tasks)])
        return
    runs = [_task(i, ckpt, Path(a.cache), a.samples) for i in range(a.tasks)]
    print("| method | MMD² | minus input gaussian | minus pca sampling |")
    print("| --- | --- | --- | --- |")
    for m in METHODS:
        v = [r[m] for r in runs]
        cells = [ci(v)] + [ci([r[m] - r[b] for r in runs])
                           for b in ("input gaussian", "pca sampling")]
        print(f"| {m} | {cells[0][0]:.4f} ± {cells[0][1]:.4f} | "
              + " | ".join(f"{c[0]:+.4f} ± {c[1]:.4f}" + (" *" if abs(c[0]) > c[1] else "")
                           for c in cells[1:]) + " |")


if __name__ == "__main__":
    main()
