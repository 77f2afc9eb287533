"""A meta-learned per-task detector selector (MetaOD-style; label-free at adaptation).

For an anomaly task, :func:`meta_features` describes the normal support rows (fit and
held-out split, model space) and the candidates' label-free pseudo-anomaly scores
(:func:`metaae_edge.pipeline.candidates.select`): log n, log D, log n/D, mean |skew|,
mean excess kurtosis, the share of discrete / constant columns, the PCA components for
90% / 99% of the variance (/ D), the BIC-chosen GMM component count, and per candidate
of :data:`POOL` its pseudo-anomaly AUC minus the incumbent's. A ridge model per candidate
(fitted by ``scripts/fit_detector_selector.py`` on the ``tabular`` family's TRAIN split,
where the query labels exist) predicts the candidate's query ROC-AUC minus the
incumbent's from those features; :func:`choose` takes the argmax and keeps the incumbent
unless the predicted gain exceeds the stored threshold ``tau`` (chosen by
cross-validation on the train split). The selector is a JSON of numbers
(``checkpoints/detector_selector.json``, no pickle). The query is never read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["POOL", "SELECTOR_PATH", "choose", "load_selector", "meta_features",
           "pool_scores"]

#: the candidates the selector chooses among (``pca``: the best pseudo-scored pca-Q)
POOL = ("ensemble+ours", "ensemble", "knn", "gmm", "gaussian", "ours", "pca")
INCUMBENT = "ensemble+ours"
SELECTOR_PATH = Path(__file__).resolve().parent.parent / "checkpoints" / \
    "detector_selector.json"


def pool_scores(cands: list) -> dict[str, tuple[float, Any]]:
    """``{pool name: (pseudo-anomaly score, candidate)}`` of the scored candidates."""
    out: dict[str, tuple[float, Any]] = {}
    for c in cands:
        name = "pca" if c.name.startswith("pca-") else c.name
        if name in POOL and c.score is not None and (
                name not in out or c.score > out[name][0]):
            out[name] = (float(c.score), c)
    return out


def _data_features(fit_z: np.ndarray, seed: int) -> list[float]:
    from scipy import stats

    n, d = fit_z.shape
    sd = fit_z.std(axis=0)
    live = sd > 1e-9
    zl = fit_z[:, live] if live.any() else fit_z
    skew = np.nan_to_num(stats.skew(zl, axis=0))
    kurt = np.nan_to_num(stats.kurtosis(zl, axis=0))
    uniq = np.array([len(np.unique(np.round(c, 6))) for c in fit_z.T])
    discrete = float(np.mean(uniq <= max(10, n // 10))) if n > 20 else float(
        np.mean(uniq <= 3))
    ev = np.linalg.svd(fit_z - fit_z.mean(0), compute_uv=False) ** 2
    cum = np.cumsum(ev) / max(ev.sum(), 1e-12)
    k90 = int(np.searchsorted(cum, 0.90) + 1)
    k99 = int(np.searchsorted(cum, 0.99) + 1)
    return [np.log(n), np.log(d), np.log(n / d), float(np.mean(np.abs(skew))),
            float(np.log1p(np.clip(np.mean(kurt), -0.99, None) + 1.0)),
            discrete, float(np.mean(~live)), k90 / d, k99 / d]


def _gmm_components(cands: list) -> float:
    """The BIC-chosen component count of the ``gmm`` candidate (nan when absent)."""
    for c in cands:
        if c.name == "gmm":
            return float(getattr(getattr(c.result.model, "term", None), "k", np.nan))
    return float("nan")


def meta_features(fit_z: np.ndarray, cands: list, seed: int = 0) -> np.ndarray:
    """The label-free meta-features of one task (see the module docstring)."""
    scores = pool_scores(cands)
    inc = scores.get(INCUMBENT, (np.nan, None))[0]
    rel = [scores[p][0] - inc if p in scores else np.nan for p in POOL[1:]]
    return np.array(_data_features(np.asarray(fit_z, np.float64), seed)
                    + [_gmm_components(cands), inc] + rel, np.float64)


def load_selector(path: str | Path | None = None) -> dict[str, Any] | None:
    """The stored selector (dict of lists of numbers), or None when absent."""
    p = Path(path) if path is not None else SELECTOR_PATH
    if not p.is_file():
        return None
    return json.loads(p.read_text())


def predict_gains(sel: dict[str, Any], feats: np.ndarray) -> dict[str, float]:
    """Per pool candidate, the predicted query AUC minus the incumbent's."""
    mu, sd = np.asarray(sel["mean"]), np.asarray(sel["std"])
    x = (np.nan_to_num(feats, nan=0.0) - mu) / sd
    x = np.where(np.isnan(feats), 0.0, x)  # a missing feature sits at the train mean
    return {name: float(np.dot(m["coef"], x) + m["intercept"])
            for name, m in sel["models"].items()}


def choose(sel: dict[str, Any] | None, fit_z: np.ndarray, cands: list, seed: int = 0
           ) -> tuple[str | None, dict[str, Any]]:
    """``(pool name or None for the incumbent, record)``; only candidates present count."""
    if sel is None:
        return None, {"selector": "absent"}
    scores = pool_scores(cands)
    if INCUMBENT not in scores:
        return None, {"selector": "no incumbent"}
    gains = {k: v for k, v in predict_gains(sel, meta_features(fit_z, cands, seed)).items()
             if k in scores}
    best = max(gains, key=lambda k: (gains[k], k), default=None)
    pick = best if best is not None and gains[best] > sel["tau"] else None
    return pick, {"selector": "meta-learned ridge (tabular train split)",
                  "predicted_gain": {k: round(v, 5) for k, v in gains.items()},
                  "tau": sel["tau"], "choice": pick or INCUMBENT}
