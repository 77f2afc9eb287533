"""Closed-form candidates beside the meta-learned model, selected on held-out normal rows.

For a vector (MLP) task with the ``reconstruct`` objective (``adapt-and-export
--candidates auto``, the default) or also the ``anomaly`` objective (``--candidates all``;
not the default: its label-free criterion measured no gain on real data, see
docs/real_data.md), the pipeline fits closed-form candidates that the
existing pipeline exports unchanged, scores every candidate (the meta-learned one, "ours",
included) on normal support rows that none of them was fitted on, and exports the winner.
``--candidates meta`` (and every image / denoising task) keeps the meta-learned model only.

The candidates are plain :class:`~metaae_edge.space.CompactAE` networks with no hidden
layers (``encoder=()``, ``decoder=()``: one linear map to the latent, one back, identity
output; the "no hidden layers" edge architecture), so they have the vector IO contract
(reconstruction, latent, score = mean squared model-space error), the same ONNX exporter,
parity gate, INT8 gate and runtime. No new model kind, no new activation: a layer without
a hidden activation is what ``encoder=()`` already means.

- ``pca-Q``: PCA of the standardised fit rows at latent size Q. Encoder weight = the top Q
  components ``V`` (bias ``-V mean``), decoder weight ``V^T`` (bias ``mean``): the score is
  PCA's squared reconstruction error / D, the detector ``pca`` of
  :mod:`metaae_edge.evaluate.detectors` at that Q.
- ``pca+residual-Q`` (reconstruct only, :mod:`.residual_candidate`): PCA-Q's code and a
  small MLP correcting PCA's reconstruction (the MLP bypass contract); chosen only if it
  beats the best PCA candidate by more than one standard error on the held-out rows.
- ``gaussian`` (anomaly only): one Gaussian, Ledoit-Wolf covariance, written as a
  full-rank linear "autoencoder" whose residual is the whitened deviation: encoder
  ``W = Sigma^-1/2`` (latent = whitened coordinates), decoder ``W^-1 - I`` with bias
  ``mean``, so ``reconstruction - z = -W (z - mean)`` and the exported score is the squared
  Mahalanobis distance / D. Its ``reconstruction`` output is therefore not a reconstruction
  (it is ``x`` minus the whitened deviation, in data units): it is offered for the anomaly
  objective only, where the product is the score.

Selection criteria (higher is better), then (reconstruct) a one-standard-error rule: the
best-scoring PCA candidate is the incumbent, and ours or pca+residual replaces it only if
it beats it by more than one standard error of their paired per-row difference on the
held-out rows (few held-out rows and several candidates make the top held-out score partly
luck; before r25 "ours" was the incumbent, docs/real_data.md). For anomaly tasks the
exported detectors of :mod:`.detector_candidates` join, and the incumbent
(``ensemble+ours``) is exported: every candidate is still scored and reported, but on the
tabular family's meta-training tasks letting a challenger replace it lost ROC-AUC
(:data:`INCUMBENT`, :data:`CHALLENGE`, docs/real_data.md):

- ``reconstruct``: minus the held-out model-space MSE. PCA latent sizes are capped at the
  meta-learned model's latent size (and by ``--latent-bytes``): held-out reconstruction
  error only falls as the latent grows, so an uncapped PCA would always win by compressing
  less; the comparison is at equal or smaller latent, the bar the issue sets.
- ``anomaly``: ROC-AUC of the held-out normal rows against label-free pseudo-anomalies
  made from those same rows, averaged over three kinds (the kinds
  :mod:`metaae_edge.tasks.tabular` generates): ``dependency`` (each column from an
  independently drawn held-out row: every marginal exact, every dependency broken),
  ``local`` (deviation from the fit mean scaled by sqrt(a), a in [3, 6]) and ``global``
  (uniform over the fit rows' bounding box enlarged 10-50%). Why: the user has no anomaly
  labels, held-out normal error alone cannot rank detectors (a detector that scores
  everything low wins it), and these perturbations are the standard synthetic anomaly
  types of the benchmark literature (ADBench): a detector that separates them from unseen
  normal rows is one that modelled the normal rows' dependencies and range. The query is
  never read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .pseudo_anomalies import exceed_share as _exceed
from .pseudo_anomalies import pseudo_anomalies
from .residual_candidate import RESIDUAL_PREFIX, refit, residual_candidates, residual_gate

__all__ = ["CANDIDATE_MODES", "Candidate", "Competition", "closed_form_candidates",
           "compete", "pseudo_anomalies", "row_scores", "select", "selection_score",
           "uses_candidates"]

#: ``--candidates`` values: ``auto`` lets closed-form candidates compete where the selection
#: measured a gain (reconstruct: held-out MSE is the task's own metric); ``all`` also on
#: anomaly tasks (the label-free pseudo-anomaly criterion measured no gain on real data:
#: mean ROC-AUC 0.9379 vs 0.9397 without it, docs/real_data.md); ``meta`` keeps the
#: meta-learned model only (the behaviour before candidates).
CANDIDATE_MODES = ("auto", "all", "meta")
_OBJECTIVES = {"auto": ("reconstruct",), "all": ("reconstruct", "anomaly"), "meta": ()}


@dataclass
class Candidate:
    """One model that competes: the meta-learned adaptation or a closed-form fit."""

    name: str
    result: Any  # an AdaptResult (model, spec, normalizer, report)
    score: float | None = None

    def row(self) -> dict[str, Any]:
        """The manifest's ``candidates`` entry: name, architecture, selection score, and
        for a detector ensemble its summed ``terms`` (name, weight)."""
        row = {"name": self.name, "arch": self.result.spec.describe(),
               "latent_dim": self.result.spec.latent_dim, "score": self.score}
        terms = (getattr(self.result, "report", None) or {}).get("terms")
        if terms:
            row["terms"] = terms
        return row


def uses_candidates(mode: str, objective: str, image: bool) -> bool:
    """Whether closed-form candidates compete: ``auto`` on a vector reconstruct task,
    ``all`` on vector reconstruct and anomaly tasks (image and denoising tasks keep the
    meta-learned model)."""
    return not image and objective in _OBJECTIVES.get(mode, ())


def _linear_result(name: str, normalizer, enc_w: np.ndarray, enc_b: np.ndarray,
                   dec_w: np.ndarray, dec_b: np.ndarray):
    """An AdaptResult holding a no-hidden-layer CompactAE with the given linear maps."""
    import torch

    from ..adapt import AdaptResult, _arch_report
    from ..space import CompactAE
    from ..spec import ArchSpec

    d, q = dec_w.shape
    spec = ArchSpec(input_shape=(d,), encoder=(), latent_dim=q, decoder=())
    model = CompactAE(spec)
    with torch.no_grad():
        for layer, w, b in ((model.encoder.layers[0], enc_w, enc_b),
                            (model.decoder.layers[0], dec_w, dec_b)):
            layer.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
            layer.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
    model.eval()
    report = {"candidate": name, **_arch_report(spec)}
    return AdaptResult(model, spec, normalizer, report, {})


def pca_result(z: np.ndarray, q: int, normalizer, name: str | None = None):
    """PCA of model-space rows ``z`` at latent size ``q`` as a linear CompactAE."""
    mean = z.mean(axis=0)
    basis = np.linalg.svd(z - mean, full_matrices=False)[2][:q]  # (q, D)
    return _linear_result(name or f"pca-{q}", normalizer, basis, -basis @ mean, basis.T,
                          mean)


def gaussian_result(z: np.ndarray, normalizer):
    """One Gaussian (Ledoit-Wolf) whose exported score is Mahalanobis^2 / D."""
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf().fit(z.astype(np.float64))
    eig, vec = np.linalg.eigh(lw.covariance_)
    eig = np.maximum(eig, 1e-12 * max(float(eig.max()), 1e-12))
    w = (vec / np.sqrt(eig)) @ vec.T  # Sigma^-1/2, symmetric
    w_inv = (vec * np.sqrt(eig)) @ vec.T
    mean = lw.location_
    return _linear_result("gaussian", normalizer, w, -w @ mean, w_inv - np.eye(len(mean)),
                          mean)


def _pca_sizes(z: np.ndarray, cap: int, seed: int) -> list[int]:
    """PCA latent sizes to try: the PPCA-likelihood size, its neighbours, powers of two;
    all in [1, min(cap, D - 1, n - 1)]."""
    from ..evaluate.detectors import pca_latent_size

    n, d = z.shape
    top = min(cap, d - 1, n - 1)
    if top < 1:
        return []
    q = pca_latent_size(z, seed) if n >= 8 else 1
    sizes = {q - 1, q, q + 1, top} | {2**k for k in range(12)}
    return sorted(s for s in sizes if 1 <= s <= top)


def closed_form_candidates(fit_raw: np.ndarray, normalizer, objective: str, cap: int,
                           seed: int = 0, hold_raw: np.ndarray | None = None,
                           ours=None, channels: int | None = None,
                           series: int | None = None) -> list[Candidate]:
    """Closed-form candidates fitted on raw rows ``fit_raw`` (standardised by
    ``normalizer``); ``cap`` bounds the PCA latent size (see the module docstring).
    Anomaly objective with held-out rows ``hold_raw``: also the exported detectors of
    :mod:`.detector_candidates` (kNN, GMM, OC-SVM, the ensemble; ``ours`` adds
    ensemble+ours; ``channels`` / ``series``: windows / whole series, see there)."""
    z = normalizer.transform(np.asarray(fit_raw)).astype(np.float64)
    out = [Candidate(f"pca-{q}", pca_result(z, q, normalizer))
           for q in _pca_sizes(z, cap, seed)]
    if objective == "anomaly" and z.shape[1] >= 2 and len(z) >= 3:
        out.append(Candidate("gaussian", gaussian_result(z, normalizer)))
    if objective == "anomaly" and hold_raw is not None:
        from .detector_candidates import detector_candidates

        hold_z = normalizer.transform(np.asarray(hold_raw)).astype(np.float64)
        out += detector_candidates(z, hold_z, normalizer, seed, ours, channels, series)
    return out


def _model_scores(result, z: np.ndarray) -> np.ndarray:
    """The exported score (model-space MSE) of model-space rows ``z``."""
    import torch

    contract = result.spec.contract
    zt = contract.unflatten(torch.as_tensor(z, dtype=torch.float32))
    with torch.no_grad():
        recon, _ = result.model(zt)
        return contract.torch_errors(recon, zt)[0].numpy().astype(np.float64)


def row_scores(result, objective: str, hold_z: np.ndarray,
               pseudo: dict[str, np.ndarray]) -> np.ndarray:
    """Per held-out row, higher is better; their mean is the selection score: minus the
    row's model-space MSE (reconstruct), or the row's pseudo-anomaly AUC share averaged
    over the kinds (anomaly; the mean over rows is the mean ROC-AUC)."""
    normal = _model_scores(result, hold_z)
    if objective == "reconstruct":
        return -normal
    return np.mean([_exceed(normal, _model_scores(result, x)) for x in pseudo.values()],
                   axis=0)


def selection_score(result, objective: str, hold_z: np.ndarray,
                    pseudo: dict[str, np.ndarray]) -> float:
    """Higher is better: minus held-out MSE (reconstruct) or the mean pseudo-anomaly AUC."""
    return float(row_scores(result, objective, hold_z, pseudo).mean())


CRITERIA = {
    "reconstruct": "minus held-out model-space MSE on normal support rows no candidate was "
                   "fitted on (PCA latent <= the meta-learned model's)",
    "anomaly": "mean ROC-AUC of held-out normal support rows vs label-free pseudo-anomalies "
               "made from them (dependency: per-column independent draws; local: deviation "
               "from the fit mean x sqrt(3..6); global: uniform over the fit range +10-50%)",
}
RULES = {
    "reconstruct": "the best-scoring PCA is exported unless ours or pca+residual beats it "
                   "by more than one standard error of their paired per-row difference on "
                   "the held-out rows (train-split tasks: docs/real_data.md)",
    "anomaly": "the incumbent (ensemble+ours, else ensemble, else ours) is exported; the "
               "others are scored and reported only (on the tabular family's meta-training "
               "tasks, letting the best challenger replace it by the one-standard-error rule "
               "lost 0.0013 mean ROC-AUC: docs/real_data.md)",
}
#: per objective, the candidates kept by default (the first present; reconstruct: the
#: best-scoring PCA candidate where there is one, see :func:`select`): for anomaly the
#: z-scored ensemble with the meta-learned model's error (the best mean on the tabular
#: family's train split, docs/real_data.md)
INCUMBENT = {"reconstruct": ("ours",), "anomaly": ("ensemble+ours", "ensemble", "ours")}
#: whether a challenger may replace the incumbent by the one-standard-error rule
CHALLENGE = {"reconstruct": True, "anomaly": False}


def select(candidates: list[Candidate], objective: str, hold_raw: np.ndarray,
           fit_raw: np.ndarray, seed: int = 0, use_selector: bool = True
           ) -> tuple[Candidate, dict[str, Any]]:
    """Score every candidate on the held-out rows; the chosen one and the ``selected`` record.

    ``candidates[0]`` is "ours"; every candidate shares one normaliser (fitted on
    ``fit_raw``). One-standard-error rule (:data:`RULES`): with a few held-out rows and
    many candidates the highest held-out score is partly luck (the winner's curse), so a
    challenger must beat the incumbent (reconstruct: the best PCA, the linear model that
    extrapolates to rows unlike the support; tabular S = 32 train tasks 1.014 -> 1.006x
    PCA) by more than the noise of the comparison.
    """
    norm = candidates[0].result.normalizer
    hold_z = norm.transform(np.asarray(hold_raw)).astype(np.float64)
    fit_z = norm.transform(np.asarray(fit_raw)).astype(np.float64)
    pseudo = pseudo_anomalies(hold_z, fit_z, seed) if objective == "anomaly" else {}
    rows = [row_scores(c.result, objective, hold_z, pseudo) for c in candidates]
    for c, r in zip(candidates, rows):
        c.score = float(r.mean())
    names = [c.name for c in candidates]
    pcas = [i for i, n in enumerate(names) if n.startswith("pca-")]
    inc = next((names.index(n) for n in INCUMBENT[objective] if n in names), 0)
    if objective == "reconstruct" and pcas:  # the incumbent: the best-scoring PCA
        inc = max(pcas, key=lambda i: (candidates[i].score, -i))
    gated = residual_gate(names, rows)  # pca+residual: > 1 SE better than the best PCA
    best = max((i for i in range(len(candidates)) if i != inc and i not in gated),
               key=lambda i: (candidates[i].score, -i), default=inc)
    diff = rows[best] - rows[inc]
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    chosen = best if CHALLENGE[objective] and float(diff.mean()) > se else inc
    meta = None
    if objective == "anomaly" and use_selector:  # the meta-learned per-task selector
        from .detector_selector import choose, load_selector, pool_scores

        pick, meta = choose(load_selector(), fit_z, candidates, seed)
        if pick is not None:
            chosen = candidates.index(pool_scores(candidates)[pick][1])
    closed = max(range(1, len(candidates)), key=lambda i: (candidates[i].score, -i),
                 default=0)
    vs_ours = rows[closed] - rows[0]
    others = [c.score for i, c in enumerate(candidates) if i != chosen]
    runner = max((i for i in range(len(candidates)) if i != chosen),
                 key=lambda i: candidates[i].score, default=None)
    selected = {
        "name": candidates[chosen].name,
        "runner_up": candidates[runner].name if runner is not None else None,
        "margin": candidates[chosen].score - max(others) if others else None,
        "best_closed_form": candidates[closed].name if closed else None,
        "vs_ours": {"difference": float(vs_ours.mean()),
                    "se": float(vs_ours.std(ddof=1) / np.sqrt(len(vs_ours)))
                    if len(vs_ours) > 1 else 0.0},
        "incumbent": candidates[inc].name,
        "vs_incumbent": {"challenger": candidates[best].name,
                         "difference": float(diff.mean()), "se": se},
        "criterion": CRITERIA[objective],
        "rule": RULES[objective],
        "n_holdout": int(len(hold_z)),
        "n_fit": int(len(fit_z)),
    }
    if meta is not None:
        selected["meta_selector"] = meta
    return candidates[chosen], selected


def with_support(task, rows: np.ndarray):
    """A copy of ``task`` whose support is ``rows`` (the caller's task is not modified)."""
    return dataclasses.replace(task, support=rows, info=dict(task.info))


def _split(task, fraction: float, seed: int):
    """``(fit rows, held-out rows)`` of the support for reconstruct selection (the rule of
    :func:`~metaae_edge.pipeline.export.split_holdout`), or None below 12 rows."""
    n = len(task.support)
    n_hold = max(int(round(n * fraction)), 4)
    if n - n_hold < 8:
        return None
    perm = np.random.default_rng(seed).permutation(n)
    return task.support[perm[n_hold:]], task.support[perm[:n_hold]]


@dataclass
class Competition:
    """What :func:`compete` returns."""

    #: the model to export (an AdaptResult)
    winner: Any
    #: "ours" (the meta-learned adaptation; its report is the bundle's adaptation report)
    ours: Any
    #: the manifest's ``{"candidates": [...], "selected": {...}}``, or None (no split)
    selection: dict[str, Any] | None
    #: whether ``ours`` was adapted on every row of the task (else on the fit split)
    ours_on_task: bool = True


def compete(run_adapt, task, hold, objective: str, holdout: float, seed: int
            ) -> Competition:
    """Adapt "ours", fit the closed-form candidates, select on held-out normal rows.

    Args:
        run_adapt: ``task -> AdaptResult`` (the meta-learned adaptation).
        task: the rows to fit on (anomaly: the support without the threshold hold-out).
        hold: anomaly: the threshold hold-out rows, reused as the selection split (no
            model is fitted on them); reconstruct: None (a split is made here and the
            winner refitted on the whole support).
        objective: ``reconstruct`` or ``anomaly``.
        holdout: the selection split's fraction (reconstruct).
        seed: the split's and the pseudo-anomalies' seed.

    Returns:
        A :class:`Competition`; below 12 support rows (reconstruct) nothing is split and
        "ours" is exported, as with ``--candidates meta``.
    """
    if hold is None:
        split = _split(task, holdout, seed)
        if split is None:
            ours = run_adapt(task)
            return Competition(ours, ours, None)
        fit_rows, hold = split
        fit_task = with_support(task, fit_rows)
    else:
        fit_task = task
    ours = run_adapt(fit_task)
    norm = fit_task.normalizer()
    cap = ours.spec.latent_dim if objective == "reconstruct" else 1 << 30
    cands = [Candidate("ours", ours), *closed_form_candidates(
        fit_task.support, norm, objective, cap, seed,
        hold if objective == "anomaly" else None, ours, task.info.get("channels"),
        task.info.get("series"))]
    if objective == "reconstruct":
        cands += residual_candidates(fit_task.support, norm, cands, seed)
    best, selected = select(cands, objective, hold, fit_task.support, seed)
    selected["score"] = best.score
    selection = {"candidates": [c.row() for c in cands], "selected": selected}
    if fit_task is task:
        return Competition(best.result, ours, selection)
    if best.name == "ours":  # reconstruct: the winner is refitted on every support row
        ours = run_adapt(task)
        return Competition(ours, ours, selection)
    if best.name.startswith(RESIDUAL_PREFIX):
        return Competition(refit(best.name, task, seed), ours, selection, ours_on_task=False)
    full = task.normalizer()
    z = full.transform(task.support).astype(np.float64)
    winner = pca_result(z, best.result.spec.latent_dim, full, best.name)
    return Competition(winner, ours, selection, ours_on_task=False)
