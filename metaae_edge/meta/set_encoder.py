"""A permutation-invariant encoder of a task's support set (deep sets, Zaheer et al. 2017).

Each support row (vectors; images flattened) is described by its coordinates on the
support set's first :data:`COMPONENTS` principal directions (sign fixed as in
:func:`~metaae_edge.meta.inner.pca_basis`: the SVD of the rows does not depend on their
order) and its residual energy; these are scaled by the rows' total energy, so the
features do not depend on the input width. A shared MLP ``phi`` embeds each row, the
embeddings are mean-pooled (order-free) and an MLP ``rho`` maps the pool to the task
embedding. Rows are never mixed before the pool, so any permutation of the support rows
gives the same embedding (up to float rounding).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["COMPONENTS", "EMBED_DIM", "SetEncoder", "row_features"]

COMPONENTS = 8
EMBED_DIM = 16


def row_features(x: torch.Tensor) -> torch.Tensor:
    """(S, ...) support inputs -> (S, COMPONENTS + 1) order-free per-row features."""
    x = x.reshape(len(x), -1).to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    _, _, vt = torch.linalg.svd(x, full_matrices=False)
    idx = vt.abs().argmax(dim=1)
    signs = torch.sign(vt[torch.arange(len(vt)), idx])
    signs[signs == 0] = 1.0
    v = (vt * signs[:, None])[:COMPONENTS].T  # (D, k)
    coords = x @ v
    resid = (x.pow(2).sum(dim=1) - coords.pow(2).sum(dim=1)).clamp_min(0)[:, None]
    scale = x.pow(2).sum(dim=1).mean().clamp_min(1e-12).sqrt()
    feats = torch.cat([coords / scale, resid.sqrt() / scale], dim=1)
    if feats.shape[1] < COMPONENTS + 1:  # fewer directions than components: pad
        pad = feats.new_zeros(len(feats), COMPONENTS + 1 - feats.shape[1])
        feats = torch.cat([feats[:, :-1], pad, feats[:, -1:]], dim=1)
    return feats.to(torch.float32)


class SetEncoder(nn.Module):
    """Deep-sets encoder: ``rho(mean_i phi(features(x_i)))``."""

    def __init__(self, hidden: int = 32, embed: int = EMBED_DIM):
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(COMPONENTS + 1, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU())
        self.rho = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, embed))

    def forward(self, support: torch.Tensor) -> torch.Tensor:
        return self.rho(self.phi(row_features(support)).mean(dim=0))
