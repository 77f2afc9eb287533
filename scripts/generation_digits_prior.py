"""Fit session 31's structured digits location prior on the train image pool and choose
its two settings on val tasks (never test); write it beside the shipped checkpoints.

    python scripts/generation_digits_prior.py --tasks 150 \
        --out metaae_edge/checkpoints/digits_location_prior.json

1. Inference accuracy on train tasks ``--first`` ..: the best augmentation of the grid
   against the task's (mirror, shift exact; gamma the nearest grid point) and the
   support rows' most responsible class against their labels.
2. The variance floor x shrinkage of the move x the class shares (the support's, or
   equal over the classes present), on val tasks ``--first`` .. (the val image
   pool is disjoint from the train pool the class means come from): the squared error,
   raw units summed over pixels, of the location (support mean + shift) against the
   task's query mean, minus the support mean's own; the lowest mean wins.
3. The refusal threshold: the mean per-row log-likelihood of the best fit, on train
   digits tasks and on non-digits inputs of 64 values (sensors and manifold train tasks
   of D = 64, uniform noise in [0, 1]); ``refuse_below`` = the digits tasks' 0.5%
   quantile minus ``--margin`` nats (printed with how many of each kind it refuses).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from metaae_edge.runtime.density_digits import DigitsPrior, fit_support


def train_prior(**kw) -> DigitsPrior:
    from metaae_edge.tasks.digits import _load, digits_pool

    images, targets = _load()
    pool = digits_pool("train")
    return DigitsPrior.from_images(images[pool], targets[pool], **kw)


def tasks(split: str, first: int, n: int):
    from metaae_edge.tasks import create_family

    fam = create_family("digits", seed=0)
    return [fam.sample(split, i, objective="reconstruct") for i in range(first, first + n)]


def accuracy(prior: DigitsPrior, items) -> tuple[float, float, float]:
    """(augmentation exact rate, gamma within one grid step rate, row class rate)."""
    from metaae_edge.tasks.digits import _load

    targets = _load()[1]
    aug_ok, gam_ok, cls_ok = [], [], []
    step = np.log(prior.gammas[1] / prior.gammas[0])
    for t in items:
        fit = fit_support(t.support, prior)
        a = t.info["augmentation"]
        aug_ok.append(fit.augmentation[:3] == (a["flip"], a["dy"], a["dx"]))
        gam_ok.append(abs(np.log(fit.augmentation[3] / a["gamma"])) <= step)
        truth = targets[np.asarray(t.info["support_indices"])]
        cls_ok.append(np.mean(fit.resp.argmax(1) == truth))
    return float(np.mean(aug_ok)), float(np.mean(gam_ok)), float(np.mean(cls_ok))


SHRINKS = (0.5, 0.75, 1.0)
SHARES = ("support", "equal")


def location_gains(prior: DigitsPrior, items) -> tuple[dict, float]:
    """``({(shrink, shares): per task squared location error with the shift minus
    without (raw units)}, the support mean's mean error)``."""
    out: dict = {(a, b): [] for a in SHRINKS for b in SHARES}
    bases = []
    for t in items:
        s = np.asarray(t.support, np.float64)
        base = np.asarray(t.query, np.float64).mean(0) - s.mean(0)
        bases.append(float((base ** 2).sum()))
        fit = fit_support(s, prior)
        for shrink, shares in out:
            shift = shrink * (fit.location(shares) - s.mean(0))
            out[shrink, shares].append(float(((base - shift) ** 2).sum() - bases[-1]))
    return {k: np.asarray(v) for k, v in out.items()}, float(np.mean(bases))


def others(n: int) -> dict[str, list[np.ndarray]]:
    """Non-digits supports of 64 values: sensors / manifold train tasks, uniform noise."""
    from metaae_edge.tasks import create_family

    out: dict[str, list[np.ndarray]] = {"uniform [0, 1]": [
        np.random.default_rng(i).random((64, 64)) for i in range(20)]}
    for fam_name in ("sensors", "manifold", "tabular"):
        fam, rows = create_family(fam_name, seed=0), []
        for i in range(100, 100 + 40 * n):
            t = fam.sample("train", i, objective="reconstruct")
            x = np.asarray(t.support, np.float64).reshape(len(t.support), -1)
            if x.shape[1] == 64:
                rows.append(x)
            if len(rows) >= n:
                break
        out[fam_name] = rows
    return out


def main() -> None:
    from scipy import stats

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--first", type=int, default=100)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--margin", type=float, default=10.0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    train, val = tasks("train", a.first, a.tasks), tasks("val", a.first, a.tasks)
    best = None
    for floor in (0.002, 0.005, 0.01, 0.02):
        acc = accuracy(train_prior(floor=floor), train[:50])
        gains, base = location_gains(train_prior(floor=floor), val)
        for (shrink, shares), g in gains.items():
            h = stats.t.ppf(0.975, len(g) - 1) * g.std(ddof=1) / np.sqrt(len(g))
            print(f"floor {floor} shrink {shrink} shares {shares}: val location error "
                  f"with − without {g.mean():+.4f} ± {h:.4f} (support mean's {base:.4f}); "
                  f"train aug / gamma±1 / row class "
                  f"{acc[0]:.2f} / {acc[1]:.2f} / {acc[2]:.2f}", flush=True)
            if best is None or g.mean() < best[0]:
                best = (g.mean(), floor, shrink, shares)
    prior = train_prior(floor=best[1], shrink=best[2], shares=best[3])
    acc = accuracy(prior, train)
    print(f"chosen floor {best[1]} shrink {best[2]} shares {best[3]}; on {len(train)} train tasks: "
          f"augmentation exact {acc[0]:.3f}, gamma within a grid step {acc[1]:.3f}, "
          f"row class {acc[2]:.3f}")
    ll = np.array([fit_support(t.support, prior).loglik for t in train])
    cut = float(np.quantile(ll, 0.005) - a.margin)
    print(f"digits train log-lik: min {ll.min():.1f}, 0.5% {np.quantile(ll, 0.005):.1f}, "
          f"median {np.median(ll):.1f}; refuse_below {cut:.1f} refuses "
          f"{int((ll < cut).sum())}/{len(ll)}")
    for name, sups in others(20).items():
        o = np.array([fit_support(s, prior).loglik for s in sups])
        print(f"{name}: {len(o)} supports, log-lik max {o.max():.1f}, refused "
              f"{int((o < cut).sum())}/{len(o)}")
    if a.out:
        prior = DigitsPrior(prior.gammas, prior.means, prior.variances, prior.floor,
                            prior.shrink, round(cut, 3), prior.shares)
        Path(a.out).write_text(json.dumps({"about": "session 31 digits location prior "
                                           "(scripts/generation_digits_prior.py)",
                                           "args": vars(a), **prior.to_json()},
                                          separators=(",", ":")))


if __name__ == "__main__":
    main()
