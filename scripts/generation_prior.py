"""Fit the meta-learned location priors of generation (session 30) on meta-training tasks
and write them beside the shipped checkpoints (``metaae_edge/checkpoints/location_priors.json``).

    python scripts/generation_prior.py --families sensors,digits,manifold,tabular \
        --tasks 1000 --out metaae_edge/checkpoints/location_priors.json

Per family, train-split tasks ``--first`` .. ``--first + --tasks - 1`` (never the tasks
the generation tables evaluate: those are train 0-9 and test 0-19), grouped by input
size D. For each D with at least ``--min-tasks`` tasks, 5-fold cross-validation over the
tasks: the prior is fitted on four folds (each task's mean over all its rows, support and
query, and that mean's sampling covariance, the unbiased sample covariance over the row
count) and applied to the fifth fold's supports; the
score is the squared error of the support-based location against the task's query mean,
in the support's standardised units, summed over values. The rule (fixed before any test
run): a D keeps its prior when the upper end of the 95% t-interval of the prior's error
minus the support mean's is below 0 (below -1e-6 of the support mean's error: a prior
that refuses every support, a tie, is not kept); the kept prior is refitted on all of
that D's tasks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

from metaae_edge.runtime.density_location import fit_prior, posterior_shift


def task_stats(family: str, first: int, n: int) -> dict[int, list[tuple]]:
    """``{D: [(support, query, mean of all rows, its sampling covariance)]}``."""
    from metaae_edge.tasks import create_family

    fam, out = create_family(family, seed=0), {}
    for i in range(first, first + n):
        t = fam.sample("train", i, objective="reconstruct")
        s = np.asarray(t.support, np.float64).reshape(len(t.support), -1)
        q = np.asarray(t.query, np.float64).reshape(len(t.query), -1)
        rows = np.concatenate([s, q])
        cov = np.cov(rows.T).reshape(s.shape[1], s.shape[1]) / len(rows)  # unbiased
        out.setdefault(s.shape[1], []).append((s, q, rows.mean(0), cov))
    return out


def cv_gain(items: list[tuple], seed: int = 0) -> tuple[np.ndarray, float, int]:
    """``(per held-out task: prior error minus support-mean error (standardised units),
    the support mean's mean error, how many supports the prior refused as
    implausible)``."""
    idx = np.random.default_rng(seed).permutation(len(items))
    out, bases, refused = [], [], 0
    for part in np.array_split(idx, 5):
        rest = np.setdiff1d(idx, part)
        prior = fit_prior(np.array([items[j][2] for j in rest]),
                          np.array([items[j][3] for j in rest]))
        for j in part:
            s, q = items[j][0], items[j][1]
            sd = np.where(s.std(0) > 1e-9, s.std(0), 1.0)
            shift = posterior_shift(s, prior, int(j))
            refused += shift is None
            shift = np.zeros(s.shape[1]) if shift is None else shift
            base = ((q.mean(0) - s.mean(0)) / sd) ** 2
            bases.append(base.sum())
            out.append(float(((q.mean(0) - s.mean(0) - shift) / sd) ** 2 @ np.ones_like(sd)
                             - base.sum()))
    return np.asarray(out), float(np.mean(bases)), refused


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="sensors,digits,manifold,tabular")
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--first", type=int, default=100)
    ap.add_argument("--min-tasks", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    doc = {"about": "session 30 location priors (scripts/generation_prior.py; "
                    "docs/generation.md)", "args": vars(args), "families": {}, "cv": {}}
    for family in args.families.split(","):
        kept, cv = {}, {}
        for dim, items in sorted(task_stats(family, args.first, args.tasks).items()):
            if len(items) < args.min_tasks:
                continue
            g, base, refused = cv_gain(items)
            h = stats.t.ppf(0.975, len(g) - 1) * g.std(ddof=1) / np.sqrt(len(g))
            keep = bool(g.mean() + h < -1e-6 * base)  # a tie (all refused) is not a gain
            cv[str(dim)] = {"tasks": len(items), "gain": round(float(g.mean()), 5),
                            "base": round(base, 5),
                            "half_width": round(float(h), 5), "refused": refused,
                            "kept": keep}
            print(f"{family} D={dim}: {len(items)} tasks, prior − support mean "
                  f"{g.mean():+.4f} ± {h:.4f} (support mean's error {base:.4f}, "
                  f"{refused} refused){' kept' if keep else ''}", flush=True)
            if keep:
                kept[str(dim)] = fit_prior(np.array([it[2] for it in items]),
                                           np.array([it[3] for it in items])).to_json()
        doc["cv"][family] = cv
        if kept:
            doc["families"][family] = kept
    if args.out:
        Path(args.out).write_text(json.dumps(doc, separators=(",", ":")))


if __name__ == "__main__":
    main()
