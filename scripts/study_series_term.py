#!/usr/bin/env python
"""Choose the shift-tolerant kNN term's settings leave-one-dataset-out (series study).

Reads the per-unit caches of ``scripts/cache_detector_terms.py`` (``--cache``) and
``scripts/cache_series_terms.py`` (``--series-cache``). A *rule* adds to the exported
``ensemble+ours`` z-score sum (``current``, :data:`study_detector_weights.CURRENT`), on
the units it applies to, ``W`` times the z-score of one shift-kNN variant and ``Wo`` times
the z-score of the OC-SVM term (z-scores on the held-out normal rows, as the product's
EnsembleTerm). ``scope``: ``series`` (rows declared whole series) or ``ordered`` (also
windows). Grid: :data:`WEIGHTS` x the cached variants x :data:`SCOPES` x
:data:`OCSVM_WEIGHTS`; the first rule is ``current`` and a rule replaces the incumbent
only if it is strictly better, so ties keep the simpler rule (rules are ordered by
``W``, then ``Wo``, then the variant).

With ``--rocket-cache`` (``scripts/cache_rocket_terms.py``, r27) the variants are the
MiniRocket term's and ``Wo`` is 0: rules are ``current + W x z(one rocket variant)``.

Objective of a rule on a set of units: the mean over groups (a real dataset, both S
together; a synthetic family's train split) of the mean unit ROC-AUC. For each real
dataset d the rule is chosen without any unit of d and scored on d's rows only
(``lodo``); synthetic test rows are scored with the rule chosen on every meta-training
group. ``all (in-sample)`` is that all-group rule on rows it saw: not a result.

Example::

    python scripts/study_series_term.py --cache /tmp/terms --series-cache /tmp/series_terms \\
        --reference /tmp/ref.md
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cache_rocket_terms  # noqa: E402
import cache_series_terms  # noqa: E402
from study_detector_weights import (  # noqa: E402
    CURRENT,
    REAL12,
    TERMS,
    load,
    reference,
    vec,
    vs_current,
)

WEIGHTS = (0.0, 1.0, 2.0, 4.0)
OCSVM_WEIGHTS = (0.0, 1.0, 2.0)
SCOPES = ("series", "ordered")
#: the variants searched: the shift-kNN cache's (r25) or, with ``--rocket-cache``, the
#: MiniRocket term's (r27: no OC-SVM weight, ``OCSVM_WEIGHTS = (0,)``)
VARIANTS = [v[0] for v in cache_series_terms.variants()]


def variant_names() -> list[str]:
    return list(VARIANTS)


def rules() -> list[tuple[str, float, str, float]]:
    """``(variant, W, scope, Wo)``; the first is the current rule."""
    names = variant_names()
    out = [("-", 0.0, "series", 0.0)]
    for w in WEIGHTS:
        for wo in OCSVM_WEIGHTS:
            for scope in SCOPES:
                for v in (names if w > 0 else ["-"]):
                    if (w, wo) != (0.0, 0.0):
                        out.append((v, w, scope, wo))
    return out


def _z(d, name: str) -> np.ndarray:
    return (d[f"{name}@query"] - d[f"{name}@hold"].mean()) / float(d[f"{name}@sd"])


def unit_aucs(cache: str, series_cache: str, datasets: list[str]) -> list[dict]:
    """Per unit: group, row, split and the ROC-AUC of every rule of :func:`rules`."""
    base = {u_path: u for u_path, u in zip(
        sorted(p for p in glob.glob(os.path.join(cache, "*.npz"))
               if _keep(p, datasets)), load(cache, datasets))}
    grid = rules()
    out = []
    for path, u in base.items():
        d = np.load(os.path.join(series_cache, os.path.basename(path)))
        kind = str(d["_kind"])
        cur = u.x @ vec(CURRENT)
        oc = u.x[:, TERMS.index("ocsvm")]
        cols = []
        for v, w, scope, wo in grid:
            on = kind == "series" or (kind == "window" and scope == "ordered")
            s = cur.copy()
            if on and w > 0:
                s = s + w * _z(d, v)
            if on and wo > 0:
                s = s + wo * oc
            cols.append(s)
        alone = [_z(d, v) if kind != "table" else cur for v in variant_names()]
        out.append({"group": u.group, "row": u.row, "split": u.split, "kind": kind,
                    "auc": _auc(np.stack(cols, axis=1), u.y),
                    "alone": _auc(np.stack(alone, axis=1), u.y)})
    return out


def _auc(s: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    r = rankdata(s, axis=0)
    pos = y == 1
    npos, nneg = int(pos.sum()), int((~pos).sum())
    return (r[pos].sum(0) - npos * (npos + 1) / 2) / (npos * nneg)


def _keep(path: str, datasets: list[str]) -> bool:
    parts = os.path.basename(path)[:-4].split("~")
    return parts[0] == "syn" or (parts[0] == "real" and parts[1] in datasets)


def objective(units: list[dict]) -> np.ndarray:
    groups: dict[str, list[np.ndarray]] = {}
    for u in units:
        groups.setdefault(u["group"], []).append(u["auc"])
    return np.mean([np.mean(v, axis=0) for v in groups.values()], axis=0)


def choose(units: list[dict]) -> int:
    """Index of the best rule; ties (within 1e-9) keep the earlier (simpler) rule."""
    obj = objective(units)
    best = 0
    for i in range(1, len(obj)):
        if obj[i] > obj[best] + 1e-9:
            best = i
    return best


def row_means(units: list[dict], idx: int) -> dict[tuple, float]:
    rows: dict[tuple, list[float]] = {}
    for u in units:
        rows.setdefault(u["row"], []).append(float(u["auc"][idx]))
    return {r: float(np.mean(v)) for r, v in rows.items()}


def fmt(rule: tuple) -> str:
    v, w, scope, wo = rule
    if (w, wo) == (0.0, 0.0):
        return "current"
    parts = [f"{w:g}*{v}"] if w > 0 else []
    parts += [f"{wo:g}*ocsvm"] if wo > 0 else []
    return "current + " + " + ".join(parts) + f" on {scope} rows"


def lodo(units: list[dict], log, describe=None) -> tuple[dict, int]:
    """Leave one real dataset out: each real dataset's rows under the rule chosen without
    it, the test rows under the rule chosen on every meta-training group; ``describe(i,
    held_units)`` words rule ``i`` for ``log`` (default: this study's :func:`fmt`)."""
    describe = describe or (lambda i, _held: fmt(rules()[i]))
    meta = [u for u in units if u["split"] in ("real", "train")]
    i_all = choose(meta)
    log(f"  all meta-training groups: {describe(i_all, [])}")
    out = row_means([u for u in units if u["split"] == "test"], i_all)
    for d in dict.fromkeys(u["group"] for u in units if u["split"] == "real"):
        i = choose([u for u in meta if u["group"] != d])
        mine = [u for u in units if u["group"] == d]
        log(f"  without {d}: {describe(i, mine)}")
        out.update(row_means(mine, i))
    return out, i_all


def read_references(paths: str | None) -> dict:
    """The best-classical rows of the comma-separated real_anomaly_table.py outputs."""
    ref: dict = {}
    for path in (paths or "").split(","):
        ref.update(reference(path) if path else {})
    return ref


def table_rows(units: list[dict]) -> list:
    """The reported rows (real and synthetic test; not the synthetic train rows)."""
    return [r for r in dict.fromkeys(u["row"] for u in units) if "train" not in r[0]]


def print_rows(cols: dict, rows: list, units: list[dict], ref: dict,
               extra: tuple[list[str], dict] = ((), {})) -> None:
    """The per-row Markdown table: each column of ``cols``, then ``extra``'s named
    columns (``names, {row: values}``), then the row's best classical detector."""
    names, values = extra
    head = list(cols) + list(names)
    print("\n| dataset | S | units | " + " | ".join(head) + " | best classical |")
    print("|" + " --- |" * (len(head) + 4))
    for r in rows:
        n = sum(u["row"] == r for u in units)
        orc = f"{ref[r]['oracle_name']} ({ref[r]['oracle']:.3f})" if r in ref else "-"
        cells = [f"{cols[m][r]:.4f}" for m in cols] + [f"{v:.4f}" for v in values.get(r, ())]
        print(f"| {r[0]} | {r[1]} | {n} | " + " | ".join(cells) + f" | {orc} |")


def print_summaries(cols: dict, rows: list, ref: dict) -> None:
    """:func:`summary` of the real rows, then of the synthetic test rows."""
    real = [r for r in rows if "synthetic" not in r[0]]
    test = [r for r in rows if "synthetic" in r[0]]
    print("\n" + "\n".join(summary(cols, real, ref, "real") + summary(cols, test, ref, "test")))


def summary(cols: dict, sel: list, ref: dict, label: str) -> list[str]:
    out = [f"Mean over the {len(sel)} {label} rows: " + ", ".join(
        f"{m} {np.mean([cols[m][r] for r in sel]):.4f}" for m in cols)]
    have = [r for r in sel if r in ref]
    if have:
        out.append(f"  best classical {np.mean([ref[r]['oracle'] for r in have]):.4f} "
                   f"({len(have)} rows)")
    for m in cols:
        if m == "current":
            continue
        line = vs_current(cols, m, sel)
        if have:
            g = np.array([cols[m][r] - ref[r]["oracle"] for r in have])
            line += (f"; - best classical {g.mean():+.4f}, rows >= best classical - "
                     f"0.005: {int((g >= -0.005).sum())} of {len(have)}")
        out.append(line)
    return out


def main(argv=None) -> int:
    global WEIGHTS, SCOPES, OCSVM_WEIGHTS, VARIANTS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True)
    terms = p.add_mutually_exclusive_group(required=True)
    terms.add_argument("--series-cache", help="scripts/cache_series_terms.py output (r25)")
    terms.add_argument("--rocket-cache", help="scripts/cache_rocket_terms.py output (r27: "
                       "rocket variants, no OC-SVM weight)")
    p.add_argument("--datasets", default=REAL12)
    p.add_argument("--reference", default=None, help="real_anomaly_table.py output(s)")
    p.add_argument("--weights", default=",".join(f"{w:g}" for w in WEIGHTS),
                   help="grid of W (the pre-declared protocol: 0,1,2,4)")
    p.add_argument("--scopes", default=",".join(SCOPES),
                   help="scopes searched (the pre-declared protocol: series,ordered)")
    args = p.parse_args(argv)
    WEIGHTS = tuple(float(w) for w in args.weights.split(","))
    SCOPES = tuple(args.scopes.split(","))
    if args.rocket_cache:
        OCSVM_WEIGHTS = (0.0,)
        VARIANTS = [v[0] for v in cache_rocket_terms.variants()]
    units = unit_aucs(args.cache, args.series_cache or args.rocket_cache,
                      args.datasets.split(","))
    ref = read_references(args.reference)
    grid = rules()
    print(f"{len(units)} units, {len(grid)} rules")
    print("LODO choices:")
    cols = {"current": row_means(units, 0)}
    cols["lodo"], i_all = lodo(units, print)
    cols["all (in-sample)"] = row_means(units, i_all)
    rows = table_rows(units)
    print_rows(cols, rows, units, ref)
    print_summaries(cols, rows, ref)
    diagnostic(units, grid, i_all, rows, ref)
    return 0


def diagnostic(units: list[dict], grid: list, i_all: int, rows: list, ref: dict) -> None:
    """After the result, not evidence: the all-group rule on series rows only, the chosen
    variant alone, and the best variant alone per row (in-sample, an oracle)."""
    v, w, _, wo = grid[i_all]
    if w == 0:
        return
    names = variant_names()
    j_series = grid.index((v, w, "series", wo))
    cols = {"current": row_means(units, 0), "all-group rule on series rows only":
            row_means(units, j_series)}
    alone: dict[tuple, list[np.ndarray]] = {}
    for u in units:
        alone.setdefault(u["row"], []).append(u["alone"])
    mean_alone = {r: np.mean(a, axis=0) for r, a in alone.items()}
    cols[f"{v} alone"] = {r: float(a[names.index(v)]) for r, a in mean_alone.items()}
    cols["best variant alone (oracle)"] = {r: float(a.max()) for r, a in mean_alone.items()}
    print("\nDiagnostic (after the result, in-sample, not evidence; tables: current):")
    print("\n| dataset | S | " + " | ".join(cols) + " | best variant | best classical |")
    print("|" + " --- |" * (len(cols) + 4))
    tables = {u["row"] for u in units if u["kind"] == "table"}
    for r in rows:
        orc = f"{ref[r]['oracle_name']} ({ref[r]['oracle']:.3f})" if r in ref else "-"
        best = "-" if r in tables else names[int(np.argmax(mean_alone[r]))]
        print(f"| {r[0]} | {r[1]} | " + " | ".join(
            "-" if r in tables and "alone" in m else f"{cols[m][r]:.4f}" for m in cols)
              + f" | {best} | {orc} |")
    ordered = [r for r in rows if "synthetic" not in r[0] and r not in tables]
    print(f"Means over the {len(ordered)} real series / window rows: " + ", ".join(
        f"{m} {np.mean([cols[m][r] for r in ordered]):.4f}" for m in cols))


if __name__ == "__main__":
    sys.exit(main())
