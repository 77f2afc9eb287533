"""Exported classical detectors as anomaly candidates (see :mod:`.detector_graphs`).

:func:`detector_candidates` fits, on the fit rows in model space, the candidates that
join ``pca-Q`` and ``gaussian`` for the anomaly objective:

- ``knn``: distance to the 5th nearest fit row (the ``knn`` detector of
  :mod:`metaae_edge.evaluate.detectors`); the bank is the fit rows, or above
  :data:`BANK_MAX` rows their k-means prototypes (edge size: the bank is n x D floats);
- ``gmm``: the ``gmm`` detector (components and covariance type by BIC on the fit rows);
- ``ocsvm``: the ``ocsvm`` detector (RBF, nu = 0.05, median-heuristic gamma; above
  :data:`BANK_MAX` fit rows, fitted on that many seeded ones): its support vectors, dual
  coefficients and gamma in the graph;
- ``iforest``: the ``iforest`` detector (IsolationForest, 200 trees), walked level by level
  in the graph (:mod:`.detector_iforest`); scored and recorded, never in the ensembles
  (weight 0 in every leave-one-dataset-out fold of the r24 combination study,
  docs/real_data.md);
- ``window`` (rows declared as windows, ``channels``): Mahalanobis on the phase-invariant
  window features of :mod:`.window_features` (per channel mean, log variance, log DFT
  power), computed inside the graph;
- ``shift-knn`` (rows declared as whole series, ``series``, or as windows, ``channels``):
  distance to the nearest support series under a time shift of up to 20% of the series
  length, each series z-normalised (:mod:`.series_term`, :data:`SHIFT_KNN`); scored and
  recorded, never in the ensembles: added to them it did not pass the leave-one-dataset-out
  shipping condition of the r25 series study (docs/real_data.md);
- ``rocket`` (rows declared as whole series or windows): MiniRocket features (84 dilated
  length-9 kernels, smooth PPV pooling, :mod:`.rocket_term`) of each row z-normalised
  with its first-difference channels, scored by their Ledoit-Wolf Mahalanobis distance
  (:data:`ROCKET`); scored and recorded, and summed into ``ensemble+ours`` (below);
- ``ensemble``: whitened kNN + Mahalanobis + PCA residual (PPCA-likelihood latent size
  capped at D // 2, :func:`ensemble_pca_size`),
  each divided by its standard deviation on the held-out normal rows (a z-score sum up
  to a constant). Its composition was chosen on meta-training tasks (the ``tabular``
  family's train split, 30 tasks at S = 32 and 256: the best mean of the ensembles of
  {kNN, whitened kNN, Mahalanobis, PCA, GMM} tried; docs/real_data.md), never on a real
  dataset or a query;
- ``ensemble+ours``: the same plus the meta-learned model's reconstruction error.

For windows both ensembles also hold :data:`WINDOW_PARTS`, weighted so that the window
block weighs as much as the raw-space block (:func:`window_weights`; a fixed rule chosen
on the ``activities`` family's train split, with ``sensors`` and ``tabular`` train for
non-regression, docs/real_data.md). On rows declared as whole series or windows
``ensemble+ours`` also holds the ``rocket`` term at weight :data:`ROCKET_WEIGHT`: the rule
the r27 rocket study chose on every meta-training group, which passed its
leave-one-dataset-out shipping condition (15 real rows 0.8678 -> 0.9077, SE 0.0199;
docs/real_data.md). The manifest's adaptation report lists every summed term and its
weight (``terms``).

No anomaly label and no query row is read: the scales come from the held-out normal rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BANK_MAX", "ENSEMBLE_PARTS", "ROCKET", "ROCKET_WEIGHT", "SHIFT_KNN", "WINDOW_PARTS",
           "detector_candidates", "detector_result", "window_weights"]

#: the most support rows a kNN bank stores; above, k-means prototypes of the fit rows
BANK_MAX = 2048
#: the ensemble's terms (chosen on the tabular family's train split, see the docstring;
#: re-screened with ``gmm`` and ``ocsvm`` on the tabular and sensors train splits: neither
#: measurably helped, docs/real_data.md)
ENSEMBLE_PARTS = ("knn-white", "mahalanobis", "pca")
#: added to both ensembles when the rows are declared windows (``channels``): Mahalanobis
#: on the phase-invariant window features, at the weight of :func:`window_weights` (the
#: fixed rule chosen on the activities family's train split: raw + 4 x window beat raw,
#: raw + 1 x / 2 x window and the window terms alone there, and was within 1 SE of the raw
#: ensemble on sensors train, docs/real_data.md)
WINDOW_PARTS = ("spec:mahalanobis",)
#: the ``shift-knn`` candidate's (znorm, largest shift as a fraction of T, k): the variant
#: the r25 series study's chooser picked on every meta-training group (docs/real_data.md)
SHIFT_KNN = (True, 0.2, 1)
#: the ``rocket`` term's (znorm, first-difference channels, score) and its weight in
#: ``ensemble+ours`` on series / window rows: ``current + 4 x rocket:z1:d1:ppv:maha`` on
#: series and window rows, the rule the r27 study chose on every meta-training group
ROCKET = (True, True, "maha")
ROCKET_WEIGHT = 4.0


def window_weights(raw_parts: tuple[str, ...]) -> list[float]:
    """Weights of ``raw_parts + WINDOW_PARTS``: 1 per raw-space term, and the window terms
    together as much as all raw-space terms (``ensemble+ours``: 4 raw terms, window
    Mahalanobis x 4; ``ensemble``: 3, x 3)."""
    w = len(raw_parts) / len(WINDOW_PARTS)
    return [1.0] * len(raw_parts) + [w] * len(WINDOW_PARTS)


def detector_result(name: str, term, normalizer, d: int):
    """An AdaptResult whose model is ``ScoreAE(term)`` (exported score = ``term``)."""
    from ..adapt import AdaptResult, _arch_report
    from ..spec import ArchSpec
    from .detector_graphs import ScoreAE

    spec = ArchSpec(input_shape=(d,), encoder=(), latent_dim=d, decoder=())
    model = ScoreAE(spec, term).eval()
    report = {"candidate": name, **_arch_report(spec),
              "note": "detector score carried by the vector graph: reconstruction = "
                      "input + sqrt(score) * std, not a reconstruction"}
    return AdaptResult(model, spec, normalizer, report, {})


def _bank(z: np.ndarray, seed: int) -> np.ndarray:
    """The fit rows, or their :data:`BANK_MAX` k-means prototypes."""
    if len(z) <= BANK_MAX:
        return z
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(BANK_MAX, random_state=seed, n_init=1, batch_size=4096).fit(z)
    return km.cluster_centers_


def ensemble_pca_size(z: np.ndarray, seed: int = 0) -> int:
    """The ensemble's PCA latent size: the PPCA-likelihood size of
    :func:`~metaae_edge.evaluate.detectors.pca_latent_size`, capped at D // 2 (at least 1).

    With many rows the likelihood supports nearly every component and the residual is
    left with noise directions only (italy_power S = 256: PCA 0.891 -> 0.523 ROC-AUC).
    The cap was measured on the train splits (20 tasks each, fit / hold-out as exported):
    the PCA term alone +0.078 (SE 0.034) ROC-AUC on tabular S = 256, +0.028 at S = 32; the
    ensemble +0.0015 (SE 0.0009) on tabular S = 256 and unchanged (<= 0.0001) on tabular
    S = 32 and sensors S = 32 / 256 (docs/real_data.md).
    """
    from ..evaluate.detectors import pca_latent_size

    return max(1, min(pca_latent_size(z, seed), z.shape[1] // 2))


def _term(name: str, z: np.ndarray, seed: int, ours=None, front=None):
    """Detector term ``name`` fitted on model-space rows ``z``; ``spec:NAME`` is term NAME
    on the window features of :mod:`.window_features` (``front``: their fitted constants)."""
    from ..evaluate.detectors import fit_gmm, fit_ocsvm
    from .detector_graphs import AeTerm, GmmTerm, KnnTerm, MahalanobisTerm, OcsvmTerm, PcaTerm

    if name.startswith("spec:"):
        from .window_features import FrontTerm, WindowFront, window_features

        if front is None:
            raise ValueError(f"term {name!r} needs the window front-end (channels)")
        inner = _term(name[5:], window_features(z, front), seed)
        return FrontTerm(WindowFront(front), inner)
    if name == "ocsvm":  # fitted on at most BANK_MAX seeded rows (the SVM is O(n^2))
        if len(z) > BANK_MAX:
            z = z[np.random.default_rng(seed).choice(len(z), BANK_MAX, replace=False)]
        return OcsvmTerm(fit_ocsvm(z, seed))
    if name == "knn":
        return KnnTerm(_bank(z, seed), k=5)
    if name == "knn-white":
        return KnnTerm(_bank(z, seed), k=5, whiten=True)
    if name == "mahalanobis":
        return MahalanobisTerm(z)
    if name == "pca":  # PPCA size capped at D // 2 (see ensemble_pca_size)
        return PcaTerm(z, ensemble_pca_size(z, seed))
    if name == "gmm":
        return GmmTerm(fit_gmm(z, seed))
    if name == "iforest":  # the iforest detector's forest, walked in the graph
        from .detector_iforest import IforestTerm, fit_iforest

        return IforestTerm(fit_iforest(z, seed))
    if name == "ours":
        return AeTerm(ours.model)
    raise ValueError(f"unknown detector term {name!r}")


def _scales(terms: list, hold_z: np.ndarray) -> list[float]:
    """Each term's standard deviation on the held-out normal rows, floored at 1e-3 (model
    space has unit variance per column, so a term that varies less on normal rows is
    float32 rounding noise, e.g. the PCA residual of exactly low-rank rows: dividing by
    it would amplify the noise)."""
    import torch

    zt = torch.as_tensor(hold_z, dtype=torch.float32)
    out = []
    with torch.no_grad():
        for t in terms:
            s = t(zt).double().numpy()
            sd = float(s.std(ddof=1)) if len(s) > 1 else 0.0
            out.append(max(sd, 1e-3))
    return out


def ensemble_result(name: str, parts: tuple[str, ...], z: np.ndarray, hold_z: np.ndarray,
                    normalizer, seed: int = 0, ours=None, front=None,
                    weights: list[float] | None = None, fitted: dict | None = None):
    """The z-scored sum of ``parts`` fitted on ``z``, scaled on ``hold_z`` (``front``: the
    window front-end's constants, for ``spec:`` parts; ``weights``: per part, default 1;
    ``fitted``: terms already fitted on the same rows, by part name, reused and filled)."""
    from .detector_graphs import EnsembleTerm

    fitted = {} if fitted is None else fitted
    terms = []
    for p in parts:  # each term is deterministic in (rows, seed): fit it once per call
        if p not in fitted:
            fitted[p] = _term(p, z, seed, ours, front)
        terms.append(fitted[p])
    term = EnsembleTerm(terms, _scales(terms, hold_z), weights)
    res = detector_result(name, term, normalizer, z.shape[1])
    w = [1.0] * len(parts) if weights is None else [float(v) for v in weights]
    res.report["terms"] = [{"name": p, "weight": v} for p, v in zip(parts, w)]
    return res


def detector_candidates(z: np.ndarray, hold_z: np.ndarray, normalizer, seed: int = 0,
                        ours=None, channels: int | None = None,
                        series: int | None = None) -> list[Any]:
    """The exported detector candidates fitted on model-space rows ``z`` (see the module
    docstring); ``ours`` (an AdaptResult of a vector autoencoder) adds ``ensemble+ours``;
    ``channels`` (rows are windows of that many channels) adds the window front-end's
    :data:`WINDOW_PARTS` to both ensembles and the ``window`` candidate; ``series`` (each
    row a whole series of that many channels) or ``channels`` adds ``shift-knn`` and
    ``rocket``, and ``rocket`` x :data:`ROCKET_WEIGHT` to ``ensemble+ours``."""
    from .candidates import Candidate

    d = z.shape[1]
    if d < 2 or len(z) < 6 or len(hold_z) < 2:
        return []
    front = None
    if channels is not None:
        from .window_features import check_channels, fit_front

        front = fit_front(z, normalizer, check_channels(channels, d))
    out = [Candidate(n, detector_result(n, _term(n, z, seed), normalizer, d))
           for n in ("knn", "gmm", "ocsvm", "iforest")]
    ordered = series if series is not None else channels
    fitted: dict = {}  # the terms the candidates below share, fitted once
    if ordered is not None:
        out += _ordered_candidates(z, normalizer, ordered, seed, fitted)
    raw_plus = (ENSEMBLE_PARTS, (*ENSEMBLE_PARTS, "ours"))

    def parts_of(raw: tuple[str, ...]) -> tuple[tuple[str, ...], list[float] | None]:
        if front is None:
            return raw, None
        return raw + WINDOW_PARTS, window_weights(raw)

    if front is not None:
        out.append(Candidate("window", ensemble_result("window", WINDOW_PARTS, z, hold_z,
                                                       normalizer, seed, front=front,
                                                       fitted=fitted)))
    parts, w = parts_of(raw_plus[0])
    out.append(Candidate("ensemble", ensemble_result("ensemble", parts, z, hold_z,
                                                     normalizer, seed, front=front,
                                                     weights=w, fitted=fitted)))
    if ours is not None and hasattr(ours.model, "decode"):
        parts, w = parts_of(raw_plus[1])
        if ordered is not None:  # the r27 rule: + ROCKET_WEIGHT x rocket
            w = ([1.0] * len(parts) if w is None else w) + [ROCKET_WEIGHT]
            parts = (*parts, "rocket")
        out.append(Candidate("ensemble+ours", ensemble_result(
            "ensemble+ours", parts, z, hold_z, normalizer, seed, ours, front, weights=w,
            fitted=fitted)))
    return out


def _ordered_candidates(z: np.ndarray, normalizer, ordered: int, seed: int,
                        fitted: dict) -> list[Any]:
    """``shift-knn`` and ``rocket`` on rows declared series / windows of ``ordered``
    channels; the rocket term also goes into ``fitted`` (for ``ensemble+ours``)."""
    from ..tasks.userdata import check_series
    from .candidates import Candidate
    from .rocket_term import rocket_term
    from .series_term import series_term

    d = z.shape[1]
    c = check_series(ordered, d)
    shift = series_term(z, normalizer, c, *SHIFT_KNN, seed)
    fitted["rocket"] = rocket_term(z, normalizer, c, *ROCKET, seed)
    return [Candidate("shift-knn", detector_result("shift-knn", shift, normalizer, d)),
            Candidate("rocket", detector_result("rocket", fitted["rocket"], normalizer, d))]
