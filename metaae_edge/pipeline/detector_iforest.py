"""The ``iforest`` detector (scikit-learn's IsolationForest) as a dense ONNX-exportable term.

:func:`fit_iforest` fits the forest exactly as the ``iforest`` detector of
:mod:`metaae_edge.evaluate.detectors` does (200 trees, ``max_samples="auto"`` = min(256, n),
``random_state`` = the seed mod 2**32, on the standardised rows); :class:`IforestTerm`
computes ``-score_samples`` of it, ``s(z) = 2 ** (-mean_t h_t(z) / c(max_samples))`` with
``h_t`` the depth of the leaf tree t sends ``z`` to plus ``c(n_leaf)`` (scikit-learn's
``_average_path_length``, the expected depth still to go in a subtree of ``n_leaf`` fit
rows). ``s`` is in (0, 1], larger = more anomalous, like every other term, and it is
carried by :class:`~.detector_graphs.ScoreAE` as the graph's ``score``.

Two graph forms, both plain opset-17 ops (no ``ai.onnx.ml`` TreeEnsemble, no Loop):

- ``walk`` (the default, the one exported): every tree's nodes renumbered level by level
  so the children of a node are adjacent (``right = left + 1``), all trees concatenated
  into one table; the (N, T) current node index starts at the roots and takes
  ``max_depth`` unrolled steps ``node = left[node] + (z[feat[node]] > thr[node])``
  (Gather, GatherElements, Greater, Cast, Add); a leaf points at itself with threshold
  +inf, so rows that reached one stay. Then ``Gather`` of the leaves' ``h`` values, a sum
  over trees, one ``Exp``. Intermediates are (N, T) (32k rows x 200 trees: 52 MB of int64).
- ``path`` (the node-decision x path-matrix form): every internal node of every tree
  evaluated at once (one Gather of the split features, LessOrEqual with the thresholds,
  +1 / -1), a batched MatMul with a per-tree (nodes x leaves) matrix of +1 (leaf in the
  left subtree) / -1 (right) / 0 (not below the node), whose entry sum reaches the leaf's
  depth only for the leaf the row is in. Trees padded to a common node / leaf count.
  Exact too, but its (T, N, leaves) intermediate is ~200 KB per row at 200 x 256 (6.7 GB at
  the runtime's 32k-row chunk) and its path matrices T x I x L floats (52 MB): kept for
  comparison (docs/real_data.md), not exported by the candidates.

Thresholds: scikit-learn casts rows to float32 and sends ``x`` left iff ``float(x) <=
thr`` with a float64 ``thr``; the graph stores the largest float32 ``<= thr``, for which
``x <= thr32`` is the same decision for every float32 ``x``. So, given the same float32
model-space row, the graph reaches the same leaves as scikit-learn; what can differ is the
row itself (the graph standardises in float32, scikit-learn's caller possibly in float64)
and the float32 sum over trees (measured in docs/real_data.md and tests).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["IFOREST_TREES", "IforestTerm", "average_path_length", "fit_iforest",
           "tree_tables"]

#: trees of the ``iforest`` detector (metaae_edge.evaluate.detectors: 200 for a stabler score)
IFOREST_TREES = 200


def fit_iforest(z: np.ndarray, seed: int = 0):
    """The fitted ``IsolationForest`` of the ``iforest`` detector on model-space rows."""
    from sklearn.ensemble import IsolationForest

    return IsolationForest(n_estimators=IFOREST_TREES,
                           random_state=int(seed) % 2**32).fit(np.asarray(z, np.float64))


def average_path_length(n: np.ndarray) -> np.ndarray:
    """scikit-learn's ``_average_path_length``: c(n) = 2 H(n - 1) - 2 (n - 1) / n (c(1) =
    0, c(2) = 1), the mean depth of an unsuccessful search in a BST of n keys."""
    n = np.asarray(n, np.float64)
    safe = np.maximum(n, 3.0)
    out = 2.0 * (np.log(safe - 1.0) + np.euler_gamma) - 2.0 * (safe - 1.0) / safe
    return np.where(n <= 1, 0.0, np.where(n == 2, 1.0, out))


def _below(thr: np.ndarray) -> np.ndarray:
    """The largest float32 ``<= thr`` (float32 x <= it iff x <= thr); +inf stays."""
    t = thr.astype(np.float32)
    over = t.astype(np.float64) > thr
    t[over] = np.nextafter(t[over], np.float32(-np.inf))
    return t


def tree_tables(forest: Any) -> list[dict[str, np.ndarray]]:
    """Per tree, its nodes in level order (children adjacent): ``feat`` (input column),
    ``thr`` (float64, +inf at leaves), ``left`` (left child, a leaf: itself), ``depth``,
    ``value`` (leaves: depth + c(n_leaf); internal nodes: 0), ``leaf`` (bool)."""
    n_feat = forest.n_features_in_
    sub = forest._max_features != n_feat  # scikit-learn's own subsample_features test
    out = []
    for est, cols in zip(forest.estimators_, forest.estimators_features_):
        t = est.tree_
        order, depth, pos = [0], {0: 0}, {0: 0}
        left_new: dict[int, int] = {}
        for node in order:  # breadth-first; appended children get consecutive positions
            if t.children_left[node] != -1:
                left_new[node] = len(order)
                for child in (t.children_left[node], t.children_right[node]):
                    depth[child] = depth[node] + 1
                    pos[child] = len(order)
                    order.append(int(child))
        old = np.array(order)
        leaf = t.children_left[old] == -1
        feat = np.where(leaf, 0, t.feature[old])
        cols = np.asarray(cols)
        out.append({
            "feat": cols[feat] if sub else feat,
            "thr": np.where(leaf, np.inf, t.threshold[old]),
            "left": np.array([left_new.get(o, pos[o]) for o in order]),
            "depth": np.array([depth[o] for o in order]),
            "value": np.where(leaf, np.array([depth[o] for o in order]) +
                              average_path_length(t.n_node_samples[old]), 0.0),
            "leaf": leaf})
    return out


class IforestTerm(nn.Module):
    """``-score_samples`` of a fitted ``IsolationForest`` (see the module docstring)."""

    def __init__(self, forest: Any, method: str = "walk"):
        super().__init__()
        if method not in ("walk", "path"):
            raise ValueError(f"method must be 'walk' or 'path', got {method!r}")
        tables = tree_tables(forest)
        self.method = method
        self.trees = len(tables)
        self.max_samples = int(forest.max_samples_)
        self.depth = int(max(tb["depth"].max() for tb in tables))
        c = float(average_path_length(np.array([self.max_samples]))[0])
        # score = 2 ** (-sum_t h_t / (T c)) = exp(sum_t h_t * k)
        self.k = -math.log(2.0) / (self.trees * c) if c > 0 else 0.0
        (self._walk_buffers if method == "walk" else self._path_buffers)(tables)

    def _walk_buffers(self, tables: list[dict[str, np.ndarray]]) -> None:
        sizes = [len(tb["feat"]) for tb in tables]
        offset = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        cat = {k: np.concatenate([tb[k] for tb in tables]) for k in ("feat", "thr", "value")}
        left = np.concatenate([tb["left"] + o for tb, o in zip(tables, offset)])
        self.register_buffer("roots", torch.as_tensor(offset, dtype=torch.int64))
        self.register_buffer("feat", torch.as_tensor(cat["feat"], dtype=torch.int64))
        self.register_buffer("thr", torch.as_tensor(_below(cat["thr"])))
        self.register_buffer("left", torch.as_tensor(left, dtype=torch.int64))
        self.register_buffer("value", torch.as_tensor(cat["value"], dtype=torch.float32))
        self.nodes = int(sum(sizes))

    def _path_buffers(self, tables: list[dict[str, np.ndarray]]) -> None:
        n_int = max(int((~tb["leaf"]).sum()) for tb in tables)
        n_leaf = max(int(tb["leaf"].sum()) for tb in tables)
        t = len(tables)
        feat = np.zeros((t, n_int), np.int64)
        thr = np.full((t, n_int), np.inf)
        path = np.zeros((t, n_int, n_leaf), np.float32)
        need = np.full((t, 1, n_leaf), np.inf, np.float32)  # padded leaves: never reached
        value = np.zeros((t, n_leaf, 1), np.float32)
        for i, tb in enumerate(tables):
            internal, leaves = np.flatnonzero(~tb["leaf"]), np.flatnonzero(tb["leaf"])
            row = {int(n): j for j, n in enumerate(internal)}
            feat[i, :len(internal)] = tb["feat"][internal]
            thr[i, :len(internal)] = tb["thr"][internal]
            parent = {}
            for n in internal:
                parent[int(tb["left"][n])] = (int(n), 1.0)
                parent[int(tb["left"][n]) + 1] = (int(n), -1.0)
            for j, leaf in enumerate(leaves):
                node = int(leaf)
                while node in parent:
                    node, sign = parent[node]
                    path[i, row[node], j] = sign
                need[i, 0, j] = tb["depth"][leaf] - 0.5
                value[i, j, 0] = tb["value"][leaf]
        self.register_buffer("feat", torch.as_tensor(feat.reshape(-1)))
        self.register_buffer("thr", torch.as_tensor(_below(thr.reshape(-1))))
        self.register_buffer("path", torch.as_tensor(path))
        self.register_buffer("need", torch.as_tensor(need))
        self.register_buffer("value", torch.as_tensor(value))
        self.nodes = t * (n_int + n_leaf)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        total = self._walk(z) if self.method == "walk" else self._path(z)
        return torch.exp(total * self.k)

    def _walk(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        node = self.roots.unsqueeze(0).expand(n, -1).reshape(-1)  # (N * T,)

        def at(table: torch.Tensor) -> torch.Tensor:  # one Gather: table[node], (N, T)
            return torch.index_select(table, 0, node).reshape(n, self.trees)

        for _ in range(self.depth):
            x = torch.gather(z, 1, at(self.feat))
            node = (at(self.left) + (x > at(self.thr)).to(torch.int64)).reshape(-1)
        return at(self.value).sum(dim=1)

    def _path(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.index_select(z, 1, self.feat)  # (N, T * I)
        dec = (x <= self.thr).to(torch.float32) * 2.0 - 1.0
        dec = dec.reshape(z.shape[0], self.trees, -1).transpose(0, 1)  # (T, N, I)
        hit = (torch.matmul(dec, self.path) > self.need).to(torch.float32)  # (T, N, L)
        return torch.matmul(hit, self.value).sum(dim=0)[:, 0]
