#!/usr/bin/env python
"""Choose per unit between the shipped ``ensemble+ours`` and one single term by model
centrality on the out-of-fold support scores, ``(criterion, tau)`` chosen
leave-one-dataset-out (r31 selection study, docs/real_data.md).

Reads ``scripts/cache_centrality_terms.py`` (``--centrality-cache``: every option's
out-of-fold scores of the support rows; no query) for the choice and the query scores of
``--cache``, ``--rocket-cache`` and ``--kernel-cache`` for the ROC-AUC (as
``scripts/study_pseudo_select.py``). Rule ``(c, tau)``: the most central single option
(:mod:`centrality`) is exported if its centrality exceeds ``base``'s by more than
``tau``, else ``base``; the first rule is always ``base``. Objective, LODO and test rows
as ``scripts/study_series_term.py``.

Example::

    python scripts/study_centrality_select.py --cache /tmp/terms --rocket-cache /tmp/rocket \\
        --kernel-cache /tmp/kernel --centrality-cache /tmp/centrality --reference /tmp/ref.md
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from centrality import CRITERIA, centralities, pick  # noqa: E402
from study_detector_weights import REAL12  # noqa: E402
from study_emmv_select import agreement  # noqa: E402
from study_pseudo_select import (  # noqa: E402
    OPTIONS,
    count_picks,
    option_weights,
    query_terms,
    report,
)
from study_series_term import _auc, read_references, table_rows  # noqa: E402

TAUS = (0.2, 0.1, 0.05, 0.02, 0.0)
#: ``(criterion, tau)``; the first (``"-"``) always exports ``base``
RULES = [("-", np.inf)] + [(c, t) for t in TAUS for c in CRITERIA]


def unit_centralities(e) -> dict[str, dict[str, float]]:
    """``{criterion: {option: centrality}}`` (``base`` first) of one cache unit."""
    scores = {n: np.asarray(e[f"{n}@oof"]) for n in ("base",) + OPTIONS}
    return {c: centralities(scores, c) for c in CRITERIA}


def unit_picks(cent: dict[str, dict[str, float]]) -> list[str]:
    """What every rule of :data:`RULES` exports on one unit."""
    return ["base" if c == "-" else pick(cent[c], tau) for c, tau in RULES]


def unit_aucs(args, datasets: list[str]) -> list[dict]:
    out = []
    for key, u, kind, q in query_terms(args, datasets):
        cent = unit_centralities(np.load(os.path.join(args.centrality_cache, key)))
        opts = option_weights(kind)
        names = list(opts) + unit_picks(cent)
        cols = np.stack([sum(v * q[n] for n, v in opts[c].items()) for c in names], 1)
        auc = _auc(cols, u.y)
        k = len(opts)
        out.append({"group": u.group, "row": u.row, "split": u.split, "picks": names[k:],
                    "auc": auc[k:], "option_auc": dict(zip(names[:k], auc[:k])),
                    "r": cent})
    return out


def base_rank(folder: str) -> None:
    """Label-free diagnostic (reads only the centrality cache): per (real / synthetic,
    row kind, S), base's Kendall centrality against the best single option's, how often
    base is the most central option, and its mean rank among the seven (1 = most)."""
    import glob

    groups: dict[str, list] = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.npz"))):
        k = os.path.basename(path)[:-4].split("~")
        e = np.load(path)
        c = unit_centralities(e)["kendall"]
        single = max(v for n, v in c.items() if n != "base")
        g = f"{'real' if k[0] == 'real' else 'syn'} {e['_kind']} S={k[2 if k[0] == 'real' else 3]}"
        groups.setdefault(g, []).append((c["base"], single, c["base"] >= single,
                                         1 + sum(v > c["base"] for v in c.values())))
    print("\nBase's centrality (kendall; label-free):")
    for g, v in sorted(groups.items()):
        a = np.array(v, float)
        print(f"  {g}: {len(v)} units, base {a[:, 0].mean():.3f}, best single "
              f"{a[:, 1].mean():.3f}, base most central {a[:, 2].mean():.2f}, base's "
              f"mean rank (1-7) {a[:, 3].mean():.1f}")


def rule_name(i: int) -> str:
    c, tau = RULES[i]
    return "always base" if c == "-" else f"{c} tau {tau:g}"


def describe(i: int, held: list[dict]) -> str:
    return rule_name(i) + count_picks(i, held)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for a in ("--cache", "--rocket-cache", "--kernel-cache", "--centrality-cache"):
        p.add_argument(a, required=True)
    p.add_argument("--datasets", default=REAL12)
    p.add_argument("--reference", default=None)
    args = p.parse_args(argv)
    units = unit_aucs(args, args.datasets.split(","))
    ref = read_references(args.reference)
    print(f"{len(units)} units, {len(RULES)} rules\nLODO choices:")
    fixed = {f"{rule_name(i)} (fixed)": i for i in range(1, len(RULES))}
    shown = tuple(f"{c} tau 0 (fixed)" for c in CRITERIA)
    cols = report(units, ref, describe, fixed, shown)
    rows = table_rows(units)
    gaps = [r for r in rows if r in ref and cols["current"][r] < ref[r]["oracle"] - 0.005]
    print("\nPicks of the tau 0 rules on the rows below best classical - 0.005:")
    for r in gaps:
        held = [u for u in units if u["row"] == r]
        print(f"  {r[0]} S={r[1]}: " + "; ".join(
            f"{c}{count_picks(RULES.index((c, 0.0)), held)}" for c in CRITERIA))
    agreement(units, CRITERIA)
    base_rank(args.centrality_cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
