#!/usr/bin/env python
"""Choose per unit between the shipped ``ensemble+ours`` and one single term by the
product's label-free pseudo-anomaly criterion; the threshold ``tau`` chosen
leave-one-dataset-out (r28 selection study, docs/real_data.md).

Reads ``scripts/cache_pseudo_terms.py`` (``--pseudo-cache``: held-out and pseudo-anomaly
scores, no query) for the choice and the query scores of ``--cache``
(``cache_detector_terms.py``), ``--rocket-cache`` and ``--kernel-cache`` for the ROC-AUC.
Rule ``tau``: the option of :data:`OPTIONS` with the highest pseudo-anomaly AUC is
exported if it beats ``base`` (the shipped rule's z-score sum) by more than ``tau``,
else ``base``. Objective, LODO and test rows as ``scripts/study_series_term.py``.

Example::

    python scripts/study_pseudo_select.py --cache /tmp/terms --rocket-cache /tmp/rocket \\
        --kernel-cache /tmp/kernel --pseudo-cache /tmp/pseudo --reference /tmp/ref.md
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from study_detector_weights import CURRENT, REAL12, load  # noqa: E402
from study_kernel_terms import ROCKET  # noqa: E402
from study_series_term import (  # noqa: E402
    _auc,
    _keep,
    _z,
    lodo,
    print_rows,
    print_summaries,
    read_references,
    row_means,
    table_rows,
)

OPTIONS = ("ocsvm", "knn", "gmm", "iforest", "pca-ppca", "parzen-white")
#: ``--options additive`` (secondary, after the main result): base + ADD_WEIGHT x one term
ADD_WEIGHT = 2.0
MODE = "single"
TAUS = (np.inf, 0.1, 0.05, 0.02, 0.01, 0.0)
KINDS = ("dependency", "local", "global")


def pseudo_auc(normal: np.ndarray, anomalous: dict[str, np.ndarray]) -> float:
    """The product's criterion: mean over kinds of the AUC of normal vs pseudo-anomalies."""
    from metaae_edge.pipeline.pseudo_anomalies import exceed_share

    return float(np.mean([exceed_share(normal, a).mean() for a in anomalous.values()]))


def base_parts(kind: str) -> dict[str, float]:
    """The shipped ``ensemble+ours``'s terms and weights on a unit of ``kind``."""
    w = {t: v for t, v in CURRENT.items() if not t.startswith("spec:") or kind == "window"}
    if kind != "table":
        w["rocket"] = ROCKET[1]
    return w


def option_weights(kind: str) -> dict[str, dict[str, float]]:
    """Every option's terms and weights (``base`` first) under :data:`MODE`."""
    base = base_parts(kind)
    if MODE == "single":
        return {"base": base, **{t: {t: 1.0} for t in OPTIONS}}
    return {"base": base, **{f"base+{ADD_WEIGHT:g}*{t}": {**base, t: ADD_WEIGHT}
                             for t in OPTIONS}}


def criterion(p, kind: str) -> dict[str, float]:
    """Pseudo-anomaly AUC of every option's z-score sum, from one pseudo-cache unit."""
    def zs(t, part):
        return (p[f"{t}@{part}"] - p[f"{t}@hold"].mean()) / float(p[f"{t}@sd"])

    out = {}
    for name, w in option_weights(kind).items():
        hold = sum(v * zs(t, "hold") for t, v in w.items())
        out[name] = pseudo_auc(hold, {k: sum(v * zs(t, f"pseudo:{k}") for t, v in w.items())
                                      for k in KINDS})
    return out


def pick(crit: dict[str, float], tau: float) -> str:
    names = [n for n in crit if n != "base"]
    best = max(names, key=lambda t: (crit[t], -names.index(t)))
    return best if crit[best] - crit["base"] > tau else "base"


def query_terms(args, datasets: list[str]):
    """Per unit: ``(cache file name, unit, kind, {term: query z-scores})`` for the terms
    of ``base`` and every option of :data:`OPTIONS`, from ``args.cache``,
    ``args.rocket_cache`` and ``args.kernel_cache``."""
    paths = sorted(p for p in glob.glob(os.path.join(args.cache, "*.npz"))
                   if _keep(p, datasets))
    for path, u in zip(paths, load(args.cache, datasets)):
        key = os.path.basename(path)
        t, rk = np.load(path), np.load(os.path.join(args.rocket_cache, key))
        kd = np.load(os.path.join(args.kernel_cache, key))
        kind = str(rk["_kind"])
        q = {n: _z(t, n) for n in CURRENT if f"{n}@query" in t.files}
        if kind != "table":
            q["rocket"] = _z(rk, ROCKET[0])
        q.update({n: _z(kd if n in ("pca-ppca", "parzen-white") else t, n) for n in OPTIONS})
        yield key, u, kind, q


def unit_aucs(args, datasets: list[str]) -> list[dict]:
    out = []
    for key, u, kind, q in query_terms(args, datasets):
        p = np.load(os.path.join(args.pseudo_cache, key))
        opts = option_weights(kind)
        crit = criterion(p, kind)
        picks = [pick(crit, tau) for tau in TAUS]
        cols = np.stack([sum(v * q[n] for n, v in opts[c].items()) for c in picks], 1)
        out.append({"group": u.group, "row": u.row, "split": u.split, "picks": picks,
                    "auc": _auc(cols, u.y)})
    return out


def count_picks(i: int, held: list[dict]) -> str:
    """``"; picks NAME xN, ..."``: what rule ``i`` exports on the units ``held``."""
    counts: dict[str, int] = {}
    for u in held:
        counts[u["picks"][i]] = counts.get(u["picks"][i], 0) + 1
    return "; picks " + ", ".join(f"{k} x{v}" for k, v in counts.items()) if held else ""


def describe(i: int, held: list[dict]) -> str:
    """Threshold ``i``, and what it picks on the held-out dataset's units."""
    return f"tau {TAUS[i]}{count_picks(i, held)}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for a in ("--cache", "--rocket-cache", "--kernel-cache", "--pseudo-cache"):
        p.add_argument(a, required=True)
    p.add_argument("--datasets", default=REAL12)
    p.add_argument("--reference", default=None)
    p.add_argument("--options", choices=("single", "additive"), default="single",
                   help="single (the protocol): base or one term alone; additive "
                   "(secondary): base or base + 2 x one term")
    args = p.parse_args(argv)
    global MODE
    MODE = args.options
    units = unit_aucs(args, args.datasets.split(","))
    print(f"{len(units)} units, taus {TAUS}\nLODO choices:")
    report(units, read_references(args.reference), describe,
           {f"tau {tau:g} (fixed)": i for i, tau in enumerate(TAUS[1:], 1)})
    return 0


def report(units: list[dict], ref: dict, describe, fixed: dict[str, int],
           shown: tuple[str, ...] | None = None) -> dict:
    """Print the LODO choices, the per-row table (current, lodo, all (in-sample) and the
    ``fixed`` rules ``{column: rule index}`` named in ``shown``, default all), the
    summaries (every fixed rule) and the largest LODO drop; return the table's columns."""
    cols = {"current": row_means(units, 0)}
    cols["lodo"], i_all = lodo(units, print, describe)
    cols["all (in-sample)"] = row_means(units, i_all)
    every = {name: row_means(units, i) for name, i in fixed.items()}
    cols.update({n: v for n, v in every.items() if shown is None or n in shown})
    rows = table_rows(units)
    print_rows(cols, rows, units, ref)
    print_summaries({**cols, **every}, rows, ref)
    worst = min(cols["lodo"][r] - cols["current"][r] for r in rows)
    print(f"  largest LODO drop vs current over the {len(rows)} rows: {worst:+.4f}")
    return cols


if __name__ == "__main__":
    sys.exit(main())
