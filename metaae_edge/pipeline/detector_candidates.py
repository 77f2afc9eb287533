"""Exported classical detectors as anomaly candidates (see :mod:`.detector_graphs`).

:func:`detector_candidates` fits, on the fit rows in model space, the candidates that
join ``pca-Q`` and ``gaussian`` for the anomaly objective:

- ``knn``: distance to the 5th nearest fit row (the ``knn`` detector of
  :mod:`metaae_edge.evaluate.detectors`); the bank is the fit rows, or above
  :data:`BANK_MAX` rows their k-means prototypes (edge size: the bank is n x D floats);
- ``gmm``: the ``gmm`` detector (components and covariance type by BIC on the fit rows);
- ``ensemble``: whitened kNN + Mahalanobis + PCA residual (PPCA-likelihood latent size),
  each divided by its standard deviation on the held-out normal rows (a z-score sum up
  to a constant). Its composition was chosen on meta-training tasks (the ``tabular``
  family's train split, 30 tasks at S = 32 and 256: the best mean of the ensembles of
  {kNN, whitened kNN, Mahalanobis, PCA, GMM} tried; docs/real_data.md), never on a real
  dataset or a query;
- ``ensemble+ours``: the same plus the meta-learned model's reconstruction error.

No anomaly label and no query row is read: the scales come from the held-out normal rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BANK_MAX", "ENSEMBLE_PARTS", "detector_candidates", "detector_result"]

#: the most support rows a kNN bank stores; above, k-means prototypes of the fit rows
BANK_MAX = 2048
#: the ensemble's terms (chosen on the tabular family's train split, see the docstring)
ENSEMBLE_PARTS = ("knn-white", "mahalanobis", "pca")


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


def _term(name: str, z: np.ndarray, seed: int, ours=None):
    from ..evaluate.detectors import fit_gmm, pca_latent_size
    from .detector_graphs import AeTerm, GmmTerm, KnnTerm, MahalanobisTerm, PcaTerm

    if name == "knn":
        return KnnTerm(_bank(z, seed), k=5)
    if name == "knn-white":
        return KnnTerm(_bank(z, seed), k=5, whiten=True)
    if name == "mahalanobis":
        return MahalanobisTerm(z)
    if name == "pca":
        return PcaTerm(z, max(pca_latent_size(z, seed), 1))
    if name == "gmm":
        return GmmTerm(fit_gmm(z, seed))
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
                    normalizer, seed: int = 0, ours=None):
    """The z-scored sum of ``parts`` fitted on ``z``, scaled on ``hold_z``."""
    from .detector_graphs import EnsembleTerm

    terms = [_term(p, z, seed, ours) for p in parts]
    term = EnsembleTerm(terms, _scales(terms, hold_z))
    return detector_result(name, term, normalizer, z.shape[1])


def detector_candidates(z: np.ndarray, hold_z: np.ndarray, normalizer, seed: int = 0,
                        ours=None) -> list[Any]:
    """The exported detector candidates fitted on model-space rows ``z`` (see the module
    docstring); ``ours`` (an AdaptResult of a vector autoencoder) adds ``ensemble+ours``."""
    from .candidates import Candidate

    d = z.shape[1]
    if d < 2 or len(z) < 6 or len(hold_z) < 2:
        return []
    out = [Candidate(n, detector_result(n, _term(n, z, seed), normalizer, d))
           for n in ("knn", "gmm")]
    out.append(Candidate("ensemble", ensemble_result("ensemble", ENSEMBLE_PARTS, z, hold_z,
                                                     normalizer, seed)))
    if ours is not None and hasattr(ours.model, "decode"):
        out.append(Candidate("ensemble+ours", ensemble_result(
            "ensemble+ours", (*ENSEMBLE_PARTS, "ours"), z, hold_z, normalizer, seed, ours)))
    return out
