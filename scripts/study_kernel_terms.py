#!/usr/bin/env python
"""Add one or two exportable terms to the shipped ``ensemble+ours``, weights chosen
leave-one-dataset-out (r28 study, docs/real_data.md).

Reads ``scripts/cache_detector_terms.py`` (``--cache``), ``scripts/cache_rocket_terms.py``
(``--rocket-cache``) and ``scripts/cache_kernel_terms.py`` (``--kernel-cache``). The base
(``current`` in the output: the rule shipped at r27) is the r24 ``current`` z-score sum
plus 4 x ``rocket:z1:d1:ppv:maha`` on series and window rows. A rule adds at most two of
:data:`EXTRA`, each at a weight of :data:`WEIGHTS`, on every row; rules are ordered by
total added weight and a rule replaces the incumbent only if strictly better. Objective,
LODO and the test rows as ``scripts/study_series_term.py``.

Example::

    python scripts/study_kernel_terms.py --cache /tmp/terms --rocket-cache /tmp/rocket \\
        --kernel-cache /tmp/kernel --reference /tmp/ref.md
"""

from __future__ import annotations

import argparse
import glob
import itertools
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from study_detector_weights import CURRENT, REAL12, load, vec  # noqa: E402
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

ROCKET = ("rocket:z1:d1:ppv:maha", 4.0)
EXTRA = ("ocsvm", "ocsvm-white", "knn", "pca-ppca", "parzen", "parzen-white")
WEIGHTS = (1.0, 2.0, 4.0)


def rules() -> list[dict[str, float]]:
    """``{extra term: weight}``; the first (empty) is the base rule."""
    out: list[dict[str, float]] = [{}]
    for n in (1, 2):
        for names in itertools.combinations(EXTRA, n):
            for ws in itertools.product(WEIGHTS, repeat=n):
                out.append(dict(zip(names, ws)))
    return sorted(out, key=lambda r: sum(r.values()))  # stable: ties keep the order


def fmt(rule: dict[str, float]) -> str:
    return "current" + "".join(f" + {w:g}*{t}" for t, w in rule.items())


def unit_aucs(args, datasets: list[str]) -> list[dict]:
    paths = sorted(p for p in glob.glob(os.path.join(args.cache, "*.npz"))
                   if _keep(p, datasets))
    grid = rules()
    out = []
    for path, u in zip(paths, load(args.cache, datasets)):
        key = os.path.basename(path)
        rk = np.load(os.path.join(args.rocket_cache, key))
        kd = np.load(os.path.join(args.kernel_cache, key))
        base = u.x @ vec(CURRENT)
        if str(rk["_kind"]) != "table":
            base = base + ROCKET[1] * _z(rk, ROCKET[0])
        t = np.load(path)
        extra = {n: _z(t if n in ("ocsvm", "knn") else kd, n) for n in EXTRA}
        cols = np.stack([base + sum(w * extra[n] for n, w in r.items()) for r in grid], 1)
        alone = np.stack([extra[n] for n in EXTRA], 1)
        out.append({"group": u.group, "row": u.row, "split": u.split,
                    "auc": _auc(cols, u.y), "alone": _auc(alone, u.y)})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for a in ("--cache", "--rocket-cache", "--kernel-cache"):
        p.add_argument(a, required=True)
    p.add_argument("--datasets", default=REAL12)
    p.add_argument("--reference", default=None, help="real_anomaly_table.py output(s)")
    args = p.parse_args(argv)
    units = unit_aucs(args, args.datasets.split(","))
    ref = read_references(args.reference)
    grid = rules()
    print(f"{len(units)} units, {len(grid)} rules\nLODO choices:")
    cols = {"current": row_means(units, 0)}
    cols["lodo"], i_all = lodo(units, print, lambda i, _held: fmt(grid[i]))
    cols["all (in-sample)"] = row_means(units, i_all)
    rows = table_rows(units)
    print_rows(cols, rows, units, ref, alone_columns(units))
    print_summaries(cols, rows, ref)
    worst = min(cols["lodo"][r] - cols["current"][r] for r in rows)
    print(f"  largest LODO drop vs current over the {len(rows)} rows: {worst:+.4f}")
    return 0


def alone_columns(units: list[dict]) -> tuple[list[str], dict]:
    """Each added term's AUC alone, per row (the table's extra columns)."""
    alone: dict[tuple, list[np.ndarray]] = {}
    for u in units:
        alone.setdefault(u["row"], []).append(u["alone"])
    return [f"{n} alone" for n in EXTRA], {r: np.mean(a, axis=0) for r, a in alone.items()}


if __name__ == "__main__":
    sys.exit(main())
