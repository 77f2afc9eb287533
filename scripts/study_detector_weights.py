#!/usr/bin/env python
"""Meta-learn the exported ensemble's combination rule across tasks, leave-one-dataset-out.

Reads the per-unit term caches of ``scripts/cache_detector_terms.py``. A term's z-score
is ``(s_t - mean_t) / sd_t`` (held-out normal rows' mean and std); a rule is an
aggregation (``sum``: the product's EnsembleTerm; ``max``; ``sq``: sum of squared
positive parts) and one weight per term (``spec:`` terms exist on window units only).
The objective of a rule on a set of units is the mean ROC-AUC over *groups*: each real
dataset (both shot counts together) is one group, like each synthetic family's train
split.

Protocols (MetaOD / ADBench style), each a *chooser* from meta-training units to a rule:

- ``lodo-grid[-AGG][+iforest]``: weights from ``--grid`` by coordinate ascent from three
  starts (the current rule, equal weights, the best single term), over the exportable
  terms (``+iforest``: IsolationForest too);
- ``lodo-fixed``: the best of :data:`FIXED` (current / equal weights x sum / max / sq).

For each real dataset d the chooser sees the other real datasets and the synthetic train
splits, never a unit of d; d's rows are scored with its rule. Synthetic test rows are
scored with the rule chosen on every meta-training group (never a test split). Fixed
columns (``current``: the rule exported before this study; ``equal``...) involve no
choice. ``lodo-grid, all (in-sample)``: the grid rule chosen on everything, scored on rows
it saw; ``per-dataset (in-sample)``: each dataset's own best grid rule, an upper bound of
what a per-dataset choice of weights could reach; neither is a result.

Example::

    python scripts/study_detector_weights.py --cache /tmp/terms --grid-aggs sum,max \\
        --reference /tmp/real_table.md
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from dataclasses import dataclass

import numpy as np

RAW = ("knn-white", "knn", "mahalanobis", "pca", "gmm", "ocsvm", "ours")
SPEC = ("spec:knn-white", "spec:knn", "spec:mahalanobis", "spec:pca", "spec:gmm",
        "spec:ocsvm")
TERMS = (*RAW, *SPEC, "iforest")
EXPORTABLE = (*RAW, *SPEC)
GRID = (0.0, 0.5, 1.0, 2.0, 4.0)
REAL12 = ("wine,breast_cancer,digits,iris,basicmotions,japanese_vowels,italy_power,"
          "gunpoint,arrowhead,osuleaf,acsf1,pickup_gesture")
CURRENT = {"knn-white": 1.0, "mahalanobis": 1.0, "pca": 1.0, "ours": 1.0,
           "spec:mahalanobis": 4.0}


EQUAL = {t: 1.0 for t in EXPORTABLE}
#: how the weighted, centred z-scores ``w_t * (s_t - mean_t) / sd_t`` are combined
AGGS = ("sum", "max", "sq")


@dataclass
class Unit:
    group: str  # a real dataset, or "FAMILY (SPLIT)"
    row: tuple  # the table row: (name, shots)
    split: str  # "real", "train" or "test"
    x: np.ndarray  # (n_query, len(TERMS)): (score - held-out mean) / held-out std
    y: np.ndarray
    present: np.ndarray  # (len(TERMS),) bool: the unit has the term


def load(folder: str, datasets: list[str]) -> list[Unit]:
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "*.npz"))):
        parts = os.path.basename(path)[:-4].split("~")
        if parts[0] == "real" and parts[1] in datasets:
            group, row, split = parts[1], (parts[1], int(parts[2])), "real"
        elif parts[0] == "syn":
            group, split = f"{parts[1]} ({parts[2]})", parts[2]
            row = (f"{parts[1]} (synthetic, {split} split)", int(parts[3]))
        else:
            continue
        d = np.load(path)
        y = d["_labels"].astype(int)
        x = np.zeros((len(y), len(TERMS)))
        present = np.array([f"{t}@query" in d.files for t in TERMS])
        for j in np.flatnonzero(present):
            t = TERMS[j]
            x[:, j] = (d[f"{t}@query"] - d[f"{t}@hold"].mean()) / float(d[f"{t}@sd"])
        out.append(Unit(group, row, split, x, y, present))
    return out


def scores(u: Unit, w: np.ndarray, agg: str) -> np.ndarray:
    """(n_query, m) scores of the rules ``w`` (len(TERMS), m). ``sum``: the product's
    EnsembleTerm (centring does not change its ranking); ``sq``: sum of w * relu(z)^2;
    ``max``: the largest w * z over the unit's terms of positive weight."""
    if agg == "sum":
        return u.x @ w
    if agg == "sq":
        return np.maximum(u.x, 0.0) ** 2 @ w
    on = (w > 0) & u.present[:, None]
    return np.where(on[None], u.x[:, :, None] * w[None], -np.inf).max(axis=1)


def aucs(u: Unit, w: np.ndarray, agg: str = "sum") -> np.ndarray:
    """ROC-AUC of the rules ``w`` (len(TERMS), m) on unit ``u`` (ties count half)."""
    from scipy.stats import rankdata

    r = rankdata(scores(u, w, agg), axis=0)
    pos = u.y == 1
    npos, nneg = int(pos.sum()), int((~pos).sum())
    return (r[pos].sum(0) - npos * (npos + 1) / 2) / (npos * nneg)


def objective(units: list[Unit], w: np.ndarray, agg: str = "sum") -> np.ndarray:
    """Mean over groups of the mean unit AUC, per rule (column of ``w``)."""
    groups: dict[str, list[np.ndarray]] = {}
    for u in units:
        groups.setdefault(u.group, []).append(aucs(u, w, agg))
    return np.mean([np.mean(v, axis=0) for v in groups.values()], axis=0)


def vec(rule: dict[str, float]) -> np.ndarray:
    return np.array([rule.get(t, 0.0) for t in TERMS])


def ascend(units: list[Unit], w0: np.ndarray, free: list[int], agg: str
           ) -> tuple[np.ndarray, float]:
    """Coordinate ascent over :data:`GRID`, one term at a time, until no term improves."""
    w0 = np.where(np.isin(w0, GRID), w0, 1.0) * (w0 > 0)  # starts on the grid
    w, best = w0.copy(), float(objective(units, w0[:, None], agg)[0])
    improved = True
    while improved:
        improved = False
        for j in free:
            cand = np.repeat(w[:, None], len(GRID), axis=1)
            cand[j] = GRID
            vals = objective(units, cand, agg)
            k = int(np.argmax(vals))
            if vals[k] > best + 1e-9:
                w, best, improved = cand[:, k].copy(), float(vals[k]), True
    return w, best


def choose(units: list[Unit], allowed: tuple[str, ...], agg: str = "sum") -> tuple:
    """The best ``(agg, weights)`` found from three starts (current, equal, the best
    single term)."""
    free = [TERMS.index(t) for t in allowed]
    singles = np.zeros((len(TERMS), len(free)))
    singles[free, range(len(free))] = 1.0
    best_single = singles[:, int(np.argmax(objective(units, singles, agg)))]
    starts = [vec(CURRENT), vec({t: 1.0 for t in allowed}), best_single]
    best = max((ascend(units, s, free, agg) for s in starts), key=lambda r: r[1])
    return agg, {t: float(v) for t, v in zip(TERMS, best[0]) if v > 0}


def choose_fixed(units: list[Unit], rules: dict[str, tuple]) -> tuple:
    """The one of the fixed ``rules`` with the best objective on ``units``."""
    return max(rules.values(), key=lambda r: float(objective(units, vec(r[1])[:, None],
                                                               r[0])[0]))


def row_means(units: list[Unit], rule: tuple) -> dict[tuple, float]:
    agg, weights = rule
    rows: dict[tuple, list[float]] = {}
    for u in units:
        rows.setdefault(u.row, []).append(float(aucs(u, vec(weights)[:, None], agg)[0]))
    return {r: float(np.mean(v)) for r, v in rows.items()}


def reference(path: str | None) -> dict[tuple, dict[str, float]]:
    """``exported`` and the best classical per row, from real_anomaly_table.py output."""
    out: dict[tuple, dict[str, float]] = {}
    if not path:
        return out
    head: list[str] = []
    with open(path) as f:
        lines = f.readlines()
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == "dataset":
            head = cells if cells[-1] == "best classical" else []
        elif head and len(cells) == len(head) and cells[1].isdigit():
            ref = {m: float(c.strip("*").split(" ")[0]) for m, c in zip(head, cells)
                   if m in ("exported", "ensemble+ours") and c != "-"}
            ref["oracle"] = float(cells[-1].split("(")[1].rstrip(")"))
            ref["oracle_name"] = cells[-1].split(" ")[0]
            out[(cells[0], int(cells[1]))] = ref
    return out


FIXED = {f"{n}{'' if a == 'sum' else '-' + a}": (a, r)
         for a in AGGS for n, r in (("current", CURRENT), ("equal", EQUAL))}


def fmt(rule: tuple) -> str:
    return rule[0] + ": " + (" + ".join(f"{v:g}*{t}" for t, v in rule[1].items()) or "-")


def lodo_rows(units: list[Unit], chooser, log) -> tuple[dict, tuple]:
    """Per row, the AUC of the rule ``chooser`` picks without the row's dataset (test
    rows: the rule picked on every meta-training group); and that all-data rule."""
    meta = [u for u in units if u.split in ("real", "train")]
    rule_all = chooser(meta)
    log(f"  all meta-training groups: {fmt(rule_all)}")
    out = row_means([u for u in units if u.split == "test"], rule_all)
    for d in dict.fromkeys(u.group for u in units if u.split == "real"):
        rule = chooser([u for u in meta if u.group != d])
        log(f"  without {d}: {fmt(rule)}")
        out.update(row_means([u for u in units if u.group == d], rule))
    return out, rule_all


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True, help="folder of cache_detector_terms.py")
    p.add_argument("--datasets", default=REAL12, help="real datasets (groups) to use")
    p.add_argument("--reference", default=None,
                   help="real_anomaly_table.py output(s), comma-separated: its exported "
                        "and best-classical columns are shown beside")
    p.add_argument("--grid", default=",".join(f"{g:g}" for g in GRID),
                   help="the weights each term may take")
    p.add_argument("--grid-aggs", default="sum", help="aggregations searched on the grid")
    p.add_argument("--write-rule", default=None, help="write the all-data rules (JSON)")
    return p.parse_args(argv)


def protocols(args) -> dict:
    out = {"lodo-fixed": lambda u: choose_fixed(u, FIXED)}
    for agg in args.grid_aggs.split(","):
        sfx = "" if agg == "sum" else "-" + agg
        out[f"lodo-grid{sfx}"] = lambda u, a=agg: choose(u, EXPORTABLE, a)
        out[f"lodo-grid{sfx}+iforest"] = lambda u, a=agg: choose(u, TERMS, a)
    return out


def print_row_table(units, cols: dict, ref: dict) -> list:
    """Print the per-row markdown table (``cols``: method -> row -> mean AUC, beside the
    measured exported detector and the best classical of ``ref``); returns its rows."""
    rows = [r for r in dict.fromkeys(u.row for u in units) if "train" not in r[0]]
    print("\n| dataset | S | units | exported (measured) | " + " | ".join(cols)
          + " | best classical |")
    print("|" + " --- |" * (len(cols) + 5))
    for r in rows:
        rf = ref.get(r, {})
        exp = f"{rf['exported']:.3f}" if "exported" in rf else "-"
        orc = f"{rf['oracle_name']} ({rf['oracle']:.3f})" if "oracle" in rf else "-"
        n = sum(u.row == r for u in units)
        print(f"| {r[0]} | {r[1]} | {n} | {exp} | "
              + " | ".join(f"{cols[m][r]:.4f}" for m in cols) + f" | {orc} |")
    return rows


def vs_current(cols: dict, m: str, sel: list) -> str:
    """``  m: - current +d (SE over rows s, up / down u / v)`` over the rows ``sel``."""
    d = np.array([cols[m][r] - cols["current"][r] for r in sel])
    return (f"  {m}: - current {d.mean():+.4f} (SE over rows "
            f"{d.std(ddof=1) / np.sqrt(len(d)):.4f}, up / down "
            f"{int((d > 1e-9).sum())} / {int((d < -1e-9).sum())})")


def summary(cols: dict, rows: list, ref: dict, kind: str) -> str:
    sel = [r for r in rows if ("synthetic" in r[0]) == (kind == "test")]
    out = [f"Mean over the {len(sel)} {kind} rows: " + ", ".join(
        f"{m} {np.mean([cols[m][r] for r in sel]):.4f}" for m in cols)]
    have = [r for r in sel if "oracle" in ref.get(r, {})]
    if have:
        exp = np.mean([ref[r].get("exported", np.nan) for r in have])
        out.append(f"best classical {np.mean([ref[r]['oracle'] for r in have]):.4f}, "
                   f"exported (measured) {exp:.4f} ({len(have)} rows)")
    for m in (m for m in cols if "in-sample" not in m):
        line = vs_current(cols, m, sel)
        if have:
            g = np.array([cols[m][r] - ref[r]["oracle"] for r in have])
            line += (f"; - best classical {g.mean():+.4f}, rows below best classical - "
                     f"0.005: {int((g < -0.005).sum())} of {len(have)}")
        out.append(line)
    return "\n".join(out)


def bounds(units: list[Unit], cols: dict) -> str:
    """In-sample references on the real rows: the best of :data:`FIXED` chosen per
    dataset; that choice widened to the six classical single terms; and the best single
    classical term per row (terms fitted on the fit rows)."""
    real = [r for r in dict.fromkeys(u.row for u in units if u.split == "real")]
    single = {t: row_means([u for u in units if u.split == "real"], ("sum", {t: 1.0}))
              for t in ("iforest", "ocsvm", "gmm", "knn", "pca", "mahalanobis")}

    def per_dataset(options: dict) -> float:
        out = []
        for d in dict.fromkeys(r[0] for r in real):
            rs = [r for r in real if r[0] == d]
            best = max(options, key=lambda m: np.mean([options[m][r] for r in rs]))
            out += [options[best][r] for r in rs]
        return float(np.mean(out))

    fixed = {m: cols[m] for m in FIXED}
    orc = [max(v[r] for v in single.values()) for r in real]
    return (f"In-sample references over the {len(real)} real rows: best fixed rule per "
            f"dataset {per_dataset(fixed):.4f}; best of the fixed rules and the single "
            f"classical terms per dataset {per_dataset({**fixed, **single}):.4f}; best "
            f"single classical term per row, fitted on the fit rows {np.mean(orc):.4f}")


def main(argv=None) -> int:
    global GRID
    args = parse_args(argv)
    GRID = tuple(float(g) for g in args.grid.split(","))
    units = load(args.cache, args.datasets.split(","))
    ref: dict = {}
    for path in (args.reference or "").split(","):
        ref.update(reference(path))
    print(f"{len(units)} units; groups: " + ", ".join(dict.fromkeys(u.group for u in units)))
    cols = {name: row_means(units, rule) for name, rule in FIXED.items()}
    chosen = {}
    for name, chooser in protocols(args).items():
        print(f"\nRules chosen ({name}):")
        cols[name], chosen[name] = lodo_rows(units, chooser, print)
    for name, rule in chosen.items():
        print(f"\n{name} on all meta-training groups, in-sample on the real rows: {fmt(rule)}")
    cols["lodo-grid, all (in-sample)"] = row_means(units, chosen["lodo-grid"])
    own_col = cols["per-dataset (in-sample)"] = {}  # upper bound: each group's own rule
    for g in dict.fromkeys(u.group for u in units if u.split != "train"):
        own = [u for u in units if u.group == g]
        own_col.update(row_means(own, choose(own, EXPORTABLE)))
    rows = print_row_table(units, cols, ref)
    for kind in ("real", "test"):
        print("\n" + summary(cols, rows, ref, kind))
    print("\n" + bounds(units, cols))
    if args.write_rule:
        with open(args.write_rule, "w") as f:
            json.dump({n: {"agg": r[0], "weights": r[1]} for n, r in chosen.items()}, f,
                      indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
