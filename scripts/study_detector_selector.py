#!/usr/bin/env python
"""A per-task, label-free detector selector, scored leave-one-dataset-out (numpy).

Reads the per-unit term caches of ``scripts/cache_detector_terms.py``. Per unit:

- **options** (:data:`OPTIONS`): the single exportable terms (``spec:`` ones on window
  units only), ``current`` (the exported ``ensemble+ours`` z-score sum) and ``equal``
  (weight 1 on every exportable term); their query ROC-AUC comes from the cache;
- **meta-features** (label-free, pre-declared before any LODO result was seen):
  ``detector_selector._data_features`` of the unit's fit rows (the task rebuilt exactly as
  the cache built it, ``split_holdout(task, 0.2, 0)``, model space), plus from the cached
  held-out normal rows: the mean pairwise Spearman correlation of the raw classical terms,
  the mean |skew| of their held-out scores, and a window flag (12 features).

Main configuration (pre-declared): one ridge per option (features standardised on the
training units, ``alpha`` = :data:`ALPHA`) predicting its AUC minus ``current``'s; pick the
argmax if its predicted gain exceeds ``tau``, else ``current``. ``tau`` from :data:`TAUS`
by inner leave-one-group-out on the training units (mean over groups of the realised gain).
LODO: for each real dataset d, fitted without any unit of d (synthetic train units always
in, synthetic test units never); synthetic test rows use the selector fitted on all real +
synthetic train units. Rows are (dataset, S) means over units, as the real table.

    python scripts/study_detector_selector.py --cache /tmp/combine_terms \\
        --reference /tmp/combine_ref_real_before.md,/tmp/combine_ref_syn_test.md
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study_detector_weights as sw  # noqa: E402

CLASSICAL = ("knn-white", "knn", "mahalanobis", "pca", "gmm", "ocsvm")
OPTIONS = (*CLASSICAL, "ours", *sw.SPEC, "current", "equal")
ALPHA = 10.0
TAUS = (0.0, 0.005, 0.01, 0.02, 0.05)
FIXED_TAU = None  # secondary runs only (--tau)


def rebuild_fit(key: str) -> np.ndarray:
    """The unit's fit rows in model space, rebuilt as cache_detector_terms.py builds them."""
    from metaae_edge.pipeline.export import split_holdout
    from metaae_edge.tasks import create_family
    from metaae_edge.tasks.realdata import real_task

    p = key.split("~")
    if p[0] == "real":
        task = real_task(p[1], p[3], int(p[4]), int(p[2]), contamination=0.1)
    else:
        task = create_family(p[1]).sample(p[2], int(p[4]), objective="anomaly",
                                          n_support=int(p[3]), n_query=256)
    fit, _ = split_holdout(task, 0.2, 0)
    return fit.normalizer().transform(np.asarray(fit.support)).astype(np.float64)


def cache_features(d) -> list[float]:
    from scipy import stats

    hold = [d[f"{t}@hold"] for t in CLASSICAL if f"{t}@hold" in d.files]
    rho = stats.spearmanr(np.stack(hold, 1)).statistic if len(hold) > 1 else 1.0
    rho = np.atleast_2d(rho)
    off = rho[~np.eye(len(rho), dtype=bool)]
    skew = [abs(float(np.nan_to_num(stats.skew(h)))) for h in hold]
    return [float(np.nanmean(off)), float(np.mean(skew)),
            float("spec:knn@hold" in d.files)]


def load(folder: str, datasets: list[str]):
    """(units of study_detector_weights.load, features (n, 12), option AUCs (n, m))."""
    from metaae_edge.pipeline.detector_selector import _data_features

    units = sw.load(folder, datasets)
    keys = [os.path.basename(p)[:-4] for p in sorted(glob.glob(os.path.join(folder, "*.npz")))]
    keys = [k for k in keys if k.startswith("syn~") or k.split("~")[1] in datasets]
    assert len(keys) == len(units)
    feats, auc = [], []
    for key, u in zip(keys, units):
        d = np.load(os.path.join(folder, key + ".npz"))
        feats.append(_data_features(rebuild_fit(key), 0) + cache_features(d))
        row = []
        for o in OPTIONS:
            rule = {"current": sw.CURRENT, "equal": sw.EQUAL}.get(o, {o: 1.0})
            ok = o in ("current", "equal") or u.present[sw.TERMS.index(o)]
            row.append(float(sw.aucs(u, sw.vec(rule)[:, None])[0]) if ok else np.nan)
        auc.append(row)
    return units, np.array(feats), np.array(auc)


def fit(x: np.ndarray, y: np.ndarray, alpha: float = ALPHA) -> tuple:
    """Ridge per option on standardised x; y = option AUC - current AUC (nan: absent)."""
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    xs = (x - mu) / sd
    coefs = np.zeros((x.shape[1], y.shape[1]))
    icpt = np.zeros(y.shape[1])
    for j in range(y.shape[1]):
        ok = ~np.isnan(y[:, j])
        if ok.sum() < 3:
            icpt[j] = -1.0
            continue
        a, b = xs[ok], y[ok, j]
        icpt[j] = b.mean()
        coefs[:, j] = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]),
                                      a.T @ (b - b.mean()))
    return mu, sd, coefs, icpt


def pick(model: tuple, x: np.ndarray, y: np.ndarray, tau: float) -> np.ndarray:
    """Per unit, the chosen option's index (``current`` unless the gain > tau)."""
    mu, sd, coefs, icpt = model
    g = ((x - mu) / sd) @ coefs + icpt
    g = np.where(np.isnan(y), -np.inf, g)
    best = g.argmax(1)
    inc = OPTIONS.index("current")
    return np.where(g[np.arange(len(x)), best] > tau, best, inc)


def group_gain(groups: np.ndarray, gain: np.ndarray) -> float:
    return float(np.mean([gain[groups == g].mean() for g in np.unique(groups)]))


def fit_with_tau(x, y, groups) -> tuple:
    """tau by inner leave-one-group-out, then the ridge on all the given units."""
    best = None
    for tau in (TAUS if FIXED_TAU is None else (FIXED_TAU,)):
        gain = np.zeros(len(x))
        for g in np.unique(groups):
            te = groups == g
            c = pick(fit(x[~te], y[~te], ALPHA), x[te], y[te], tau)
            gain[te] = np.nan_to_num(y[te][np.arange(te.sum()), c])
        val = group_gain(groups, gain)
        if best is None or val > best[0] + 1e-12:
            best = (val, tau)
    return fit(x, y, ALPHA), best[1]


def lodo(units, x, auc, log) -> np.ndarray:
    """Per unit, the AUC of the option the LODO selector picks."""
    y = auc - auc[:, [OPTIONS.index("current")]]
    groups = np.array([u.group for u in units])
    split = np.array([u.split for u in units])
    meta = split != "test"
    out = np.zeros(len(units))
    model, tau = fit_with_tau(x[meta], y[meta], groups[meta])
    log(f"  all meta-training units: tau {tau}")
    te = split == "test"
    out[te] = auc[te][np.arange(te.sum()), pick(model, x[te], y[te], tau)]
    for d in dict.fromkeys(groups[split == "real"]):
        tr, ev = meta & (groups != d), groups == d
        model, tau = fit_with_tau(x[tr], y[tr], groups[tr])
        c = pick(model, x[ev], y[ev], tau)
        out[ev] = auc[ev][np.arange(ev.sum()), c]
        names = [OPTIONS[i] for i in c]
        log(f"  without {d}: tau {tau}; picks " + ", ".join(
            f"{n} x{names.count(n)}" for n in dict.fromkeys(names)))
    return out


def summary(cols: dict, rows: list, ref: dict, kind: str) -> list[str]:
    sel = [r for r in rows if ("synthetic" in r[0]) == (kind == "test")]
    out = [f"Mean over the {len(sel)} {kind} rows: " + ", ".join(
        f"{m} {np.mean([cols[m][r] for r in sel]):.4f}" for m in cols)]
    have = [r for r in sel if "oracle" in ref.get(r, {})]
    if have:
        out.append(f"  best classical {np.mean([ref[r]['oracle'] for r in have]):.4f}, "
                   f"exported (measured) "
                   f"{np.mean([ref[r].get('exported', np.nan) for r in have]):.4f}")
    for m in cols:
        line = sw.vs_current(cols, m, sel)
        if have:
            g = np.array([cols[m][r] - ref[r]["oracle"] for r in have])
            line += (f"; rows >= best classical - 0.005: "
                     f"{int((g >= -0.005).sum())} of {len(have)}")
        out.append(line)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True)
    p.add_argument("--datasets", default=sw.REAL12)
    p.add_argument("--reference", default=None, help="real_anomaly_table.py output(s)")
    p.add_argument("--alpha", type=float, default=ALPHA, help="secondary runs only")
    p.add_argument("--tau", type=float, default=None, help="fixed tau: secondary only")
    a = p.parse_args(argv)
    globals().update(ALPHA=a.alpha, FIXED_TAU=a.tau)
    units, x, auc = load(a.cache, a.datasets.split(","))
    ref: dict = {}
    for path in (a.reference or "").split(","):
        ref.update(sw.reference(path))
    print(f"{len(units)} units, {x.shape[1]} features, {len(OPTIONS)} options")
    print(f"LODO selector (ridge alpha {ALPHA:g}, tau "
          + ("by inner leave-one-group-out" if FIXED_TAU is None else f"fixed {FIXED_TAU}")
          + "; main: alpha 10, inner tau):")
    chosen = lodo(units, x, auc, print)
    per_unit = {"current": auc[:, OPTIONS.index("current")],
                "equal": auc[:, OPTIONS.index("equal")], "lodo-selector": chosen,
                "best option per unit (oracle, in-sample)": np.nanmax(auc, 1)}
    rows = [r for r in dict.fromkeys(u.row for u in units) if "train" not in r[0]]
    cols = {m: {r: float(np.mean([v[i] for i, u in enumerate(units) if u.row == r]))
                for r in rows} for m, v in per_unit.items()}
    sw.print_row_table(units, cols, ref)
    for kind in ("real", "test"):
        print("\n" + "\n".join(summary(cols, rows, ref, kind)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
