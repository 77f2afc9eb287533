#!/usr/bin/env python
"""Choose per unit between the shipped ``ensemble+ours`` and one single term by the
Excess-Mass or Mass-Volume area (Goix 2016), ``(criterion, tau)`` chosen
leave-one-dataset-out (r30 selection study, docs/real_data.md).

Reads ``scripts/cache_emmv_terms.py`` (``--emmv-cache``: per option and feature draw, the
EM and MV areas on the held-out normal rows; no query) for the choice and the query
scores of ``--cache``, ``--rocket-cache`` and ``--kernel-cache`` for the ROC-AUC (as
``scripts/study_pseudo_select.py``). Rule ``(c, tau)``: the option with the highest
``r_c`` (:func:`ratios`) is exported if ``r_c > tau``, else ``base``; the first rule is
always ``base``. Objective, LODO and test rows as ``scripts/study_series_term.py``.

Example::

    python scripts/study_emmv_select.py --cache /tmp/terms --rocket-cache /tmp/rocket \\
        --kernel-cache /tmp/kernel --emmv-cache /tmp/emmv --reference /tmp/ref.md
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from study_detector_weights import REAL12  # noqa: E402
from study_pseudo_select import (  # noqa: E402
    OPTIONS,
    count_picks,
    option_weights,
    query_terms,
    report,
)
from study_series_term import _auc, read_references, table_rows  # noqa: E402

TAUS = (1.0, 0.5, 0.2, 0.1, 0.05, 0.0)
CRITERIA = ("em", "mv")
#: ``(criterion, tau)``; the first (``"-"``) always exports ``base``
RULES = [("-", np.inf)] + [(c, t) for t in TAUS for c in CRITERIA]
FLOOR = 1e-9


def ratios(e, crit: str) -> dict[str, float]:
    """``r(o)`` of every option against ``base`` from one EM/MV cache unit: ``log(EM(o) /
    EM(base))`` or ``log(MV(base) / MV(o))``, areas averaged over the feature draws."""
    area = {n: max(float(np.mean(e[f"{n}@{crit}"])), FLOOR) for n in ("base",) + OPTIONS}
    sign = 1.0 if crit == "em" else -1.0
    return {o: sign * float(np.log(area[o] / area["base"])) for o in OPTIONS}


def pick(r: dict[str, float], tau: float) -> str:
    """The option of highest ``r`` (ties: the earlier) if above ``tau``, else ``base``."""
    names = list(r)
    best = max(names, key=lambda o: (r[o], -names.index(o)))
    return best if r[best] > tau else "base"


def unit_picks(e) -> list[str]:
    """What every rule of :data:`RULES` exports on one unit."""
    r = {c: ratios(e, c) for c in CRITERIA}
    return ["base" if c == "-" else pick(r[c], tau) for c, tau in RULES]


def unit_aucs(args, datasets: list[str]) -> list[dict]:
    out = []
    for key, u, kind, q in query_terms(args, datasets):
        e = np.load(os.path.join(args.emmv_cache, key))
        opts = option_weights(kind)
        names = list(opts) + unit_picks(e)
        cols = np.stack([sum(v * q[n] for n, v in opts[c].items()) for c in names], 1)
        auc = _auc(cols, u.y)
        out.append({"group": u.group, "row": u.row, "split": u.split, "picks": names[7:],
                    "auc": auc[7:], "option_auc": dict(zip(names[:7], auc[:7])),
                    "r": {c: ratios(e, c) for c in CRITERIA}})
    return out


def agreement(units: list[dict], criteria: tuple[str, ...] = CRITERIA) -> None:
    """After the result, not evidence: per unit, the Spearman correlation over the seven
    options (base at ``r = 0`` unless ``u["r"][c]`` has its own) between ``r_c`` and the
    query ROC-AUC, and how often the top-``r`` option's AUC is >= base's (ties: base), by
    real S and synthetic split."""
    from scipy.stats import spearmanr

    print("\nDiagnostic (after the result; in-sample, uses the query labels):")
    for label, sel in (("real S=32", lambda u: u["split"] == "real" and u["row"][1] == 32),
                       ("real S=256", lambda u: u["split"] == "real" and u["row"][1] == 256),
                       ("synthetic", lambda u: u["split"] != "real")):
        mine = [u for u in units if sel(u)]
        parts = []
        for c in criteria:
            rho, ok = [], []
            for u in mine:
                r = {"base": 0.0, **u["r"][c]}
                a = u["option_auc"]
                if np.ptp(list(r.values())) > 0 and np.ptp(list(a.values())) > 0:
                    rho.append(spearmanr([r[n] for n in a], list(a.values()))[0])
                top = max(r, key=lambda n: (r[n], n == "base"))
                ok.append(a[top] >= a["base"])
            mean = f"{np.mean(rho):+.3f}" if rho else "-"
            parts.append(f"{c}: mean rho {mean} "
                         f"({len(rho)} units with a spread), top >= base {np.mean(ok):.2f}")
        print(f"  {label} ({len(mine)} units): " + "; ".join(parts))


def rule_name(i: int) -> str:
    c, tau = RULES[i]
    return "always base" if c == "-" else f"{c} tau {tau:g}"


def describe(i: int, held: list[dict]) -> str:
    return rule_name(i) + count_picks(i, held)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for a in ("--cache", "--rocket-cache", "--kernel-cache", "--emmv-cache"):
        p.add_argument(a, required=True)
    p.add_argument("--datasets", default=REAL12)
    p.add_argument("--reference", default=None)
    args = p.parse_args(argv)
    units = unit_aucs(args, args.datasets.split(","))
    ref = read_references(args.reference)
    print(f"{len(units)} units, {len(RULES)} rules\nLODO choices:")
    fixed = {f"{rule_name(i)} (fixed)": i for i in range(1, len(RULES))}
    cols = report(units, ref, describe, fixed, ("em tau 0 (fixed)", "mv tau 0 (fixed)"))
    rows = table_rows(units)
    gaps = [r for r in rows if r in ref and cols["current"][r] < ref[r]["oracle"] - 0.005]
    print("\nPicks of em / mv tau 0 on the rows below best classical - 0.005:")
    for r in gaps:
        held = [u for u in units if u["row"] == r]
        print(f"  {r[0]} S={r[1]}: em{count_picks(RULES.index(('em', 0.0)), held)}; "
              f"mv{count_picks(RULES.index(('mv', 0.0)), held)}")
    agreement(units)
    return 0


if __name__ == "__main__":
    sys.exit(main())
