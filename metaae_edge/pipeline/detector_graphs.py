"""Classical one-class detectors (kNN, Mahalanobis, PCA residual, Gaussian mixture) and a
standardised score ensemble of them, as torch modules that export through the vector
contract's graph unchanged.

The vector contract's score is ``mean((dec(enc(z)) - z)^2, axis=1)``. A detector with a
non-negative score ``s(z)`` is written as ``enc(z) = z + sqrt(s(z)) * 1`` (latent width D)
and ``dec = identity``: then ``dec(enc(z)) - z = sqrt(s) * 1`` and the exported score is
exactly ``s``. So the ONNX exporter, the parity gate, the INT8 gate, the threshold, the
bundle and the torch-free runtime (``metaae-edge run --mode score``) serve these
detectors without a new model kind. As for the ``gaussian`` candidate, the
``reconstruction`` output is then not a reconstruction (the input displaced by
``sqrt(score) * std`` along every feature) and the ``latent`` is not a code: they are
offered for the anomaly objective only, where the product is the score. The ArchSpec is
the no-hidden-layer D -> [D] -> D MLP whose interface they share; its parameter and MAC
counts are those of that linear map, not of the detector (the kNN bank is n x D floats).

Scores (model space ``z``, standardised on the fit rows, as every detector of
:mod:`metaae_edge.evaluate.detectors`):

- ``knn``: distance to the k-th nearest fit row (k = 5); squared distances by one MatMul
  (``|z|^2 - 2 z B^T + |B|^2``), the k smallest by TopK; ``whiten=True`` measures it in
  Ledoit-Wolf whitened coordinates (kNN that also models the correlations).
- ``mahalanobis``: squared whitened distance to the mean (Ledoit-Wolf).
- ``pca``: mean squared residual of PCA at a given latent size.
- ``gmm``: ``-log p(z)`` of a Gaussian mixture (log-sum-exp over the components) minus
  its lower bound ``-max_k(log pi_k + log|P_k| - D/2 log 2 pi)``, so it is >= 0.
- ``ocsvm``: an RBF one-class SVM's ``sum_i a_i - sum_i a_i exp(-gamma |z - sv_i|^2)``
  (>= 0; minus scikit-learn's ``score_samples`` plus a constant): a MatMul to the support
  vectors' bank, Exp, a MatMul with the dual coefficients.
- ``ensemble``: ``sum_i s_i(z) / sd_i``, ``sd_i`` the standard deviation of term i on
  held-out normal rows: the mean of the terms' z-scores up to a constant (same ranking).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["EnsembleTerm", "GmmTerm", "KnnTerm", "MahalanobisTerm", "OcsvmTerm", "PcaTerm",
           "ScoreAE", "whitening"]


def _buf(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, np.float32))


def whitening(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, W)`` with ``W = Sigma^-1/2`` of the Ledoit-Wolf covariance of rows ``z``.

    Eigenvalues are floored at 1e-3 of their mean (``W`` at most ~32x the data's scale):
    on (near-)singular rows a larger ``W`` turns float32 rounding in the graph's distance
    MatMuls into score noise that differs between torch and onnxruntime (parity).
    """
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf().fit(np.asarray(z, np.float64))
    eig, vec = np.linalg.eigh(lw.covariance_)
    eig = np.maximum(eig, 1e-3 * max(float(eig.mean()), 1e-12))
    return lw.location_, (vec / np.sqrt(eig)) @ vec.T


class KnnTerm(nn.Module):
    """Distance to the k-th nearest row of a stored bank (optionally whitened first)."""

    def __init__(self, bank: np.ndarray, k: int = 5, whiten: bool = False):
        super().__init__()
        bank = np.asarray(bank, np.float64)
        mean, w = whitening(bank) if whiten else (np.zeros(bank.shape[1]),
                                                  np.eye(bank.shape[1]))
        b = (bank - mean) @ w
        self.k = int(min(k, len(b)))
        self.register_buffer("mean", _buf(mean))
        self.register_buffer("w", _buf(w))
        self.register_buffer("bank_t", _buf(b.T.copy()))
        self.register_buffer("bank_sq", _buf((b * b).sum(axis=1)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = (z - self.mean) @ self.w
        d2 = (y * y).sum(dim=1, keepdim=True) - 2.0 * (y @ self.bank_t) + self.bank_sq
        kth = torch.topk(d2, self.k, dim=1, largest=False).values[:, self.k - 1]
        return torch.sqrt(torch.relu(kth))


class MahalanobisTerm(nn.Module):
    """Squared Mahalanobis distance, Ledoit-Wolf covariance."""

    def __init__(self, z: np.ndarray):
        super().__init__()
        mean, w = whitening(z)
        self.register_buffer("mean", _buf(mean))
        self.register_buffer("w", _buf(w))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = (z - self.mean) @ self.w
        return (y * y).sum(dim=1)


class PcaTerm(nn.Module):
    """Mean squared residual of PCA at latent size ``q``."""

    def __init__(self, z: np.ndarray, q: int):
        super().__init__()
        mean = z.mean(axis=0)
        basis = np.linalg.svd(z - mean, full_matrices=False)[2][:q]
        self.register_buffer("mean", _buf(mean))
        self.register_buffer("basis", _buf(basis))
        self.register_buffer("basis_t", _buf(basis.T.copy()))
        self.inv_d = 1.0 / z.shape[1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c = z - self.mean
        r = c - (c @ self.basis_t) @ self.basis
        return (r * r).sum(dim=1) * self.inv_d


class GmmTerm(nn.Module):
    """``-log p(z)`` of a fitted scikit-learn ``GaussianMixture`` minus its lower bound."""

    def __init__(self, gmm: Any):
        super().__init__()
        k, d = gmm.means_.shape
        pc = np.asarray(gmm.precisions_cholesky_, np.float64)
        if gmm.covariance_type == "diag":
            pc = np.stack([np.diag(p) for p in pc])
        elif gmm.covariance_type != "full":
            raise ValueError(f"covariance_type {gmm.covariance_type!r} is not exported")
        logdet = np.log(np.stack([np.diag(p) for p in pc])).sum(axis=1)
        const = np.log(gmm.weights_) + logdet - 0.5 * d * math.log(2 * math.pi)
        self.register_buffer("means", _buf(gmm.means_))
        self.register_buffer("prec", _buf(pc))
        self.register_buffer("const", _buf(const))
        self.bound = float(const.max())  # log p <= max_k const_k
        self.k = k

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        parts = []
        for i in range(self.k):
            y = (z - self.means[i]) @ self.prec[i]
            parts.append(self.const[i] - 0.5 * (y * y).sum(dim=1))
        lp = torch.stack(parts, dim=1)
        top = lp.max(dim=1, keepdim=True).values
        log_p = top[:, 0] + torch.log(torch.exp(lp - top).sum(dim=1))
        return torch.relu(self.bound - log_p)


class OcsvmTerm(nn.Module):
    """``sum(a) - sum_i a_i exp(-gamma |z - sv_i|^2)`` of a fitted RBF ``OneClassSVM``."""

    def __init__(self, svm: Any):
        super().__init__()
        sv = np.asarray(svm.support_vectors_, np.float64)
        a = np.asarray(svm.dual_coef_, np.float64).reshape(-1)
        self.gamma = float(svm._gamma)
        self.register_buffer("sv_t", _buf(sv.T.copy()))
        self.register_buffer("sv_sq", _buf((sv * sv).sum(axis=1)))
        self.register_buffer("alpha", _buf(a.reshape(-1, 1)))
        self.total = float(a.sum())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        d2 = (z * z).sum(dim=1, keepdim=True) - 2.0 * (z @ self.sv_t) + self.sv_sq
        k = torch.exp(torch.relu(d2) * (-self.gamma))
        return torch.relu(self.total - (k @ self.alpha)[:, 0])


class AeTerm(nn.Module):
    """The model-space reconstruction MSE of a compact autoencoder (e.g. "ours")."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        d = self.model.decode(self.model.encode(z)) - z
        return (d * d).sum(dim=1) * (1.0 / z.shape[1])


class EnsembleTerm(nn.Module):
    """``sum_i weight_i * term_i(z) / scale_i`` (non-negative terms, positive weights)."""

    def __init__(self, terms: list[nn.Module], scales: list[float],
                 weights: list[float] | None = None):
        super().__init__()
        self.terms = nn.ModuleList(terms)
        w = np.ones(len(terms)) if weights is None else np.asarray(weights, np.float64)
        self.coef = [float(wi / max(s, 1e-12)) for wi, s in zip(w, scales)]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        total = self.terms[0](z) * self.coef[0]
        for term, c in zip(self.terms[1:], self.coef[1:]):
            total = total + term(z) * c
        return total


class ScoreAE(nn.Module):
    """A detector score in the vector contract's shape: ``encode(z) = z + sqrt(s(z))``,
    ``decode = identity``, so the contract's score (mean squared ``recon - z``) is ``s``."""

    def __init__(self, spec: Any, term: nn.Module):
        super().__init__()
        self.spec = spec
        self.term = term

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        return z + torch.sqrt(torch.relu(self.term(z))).unsqueeze(1)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return latent * 1.0

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latent = self.encode(z)
        return self.decode(latent), latent
