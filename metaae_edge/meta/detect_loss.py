"""Detection outer losses (OC-MAML style): the inner loop adapts on normal support rows
only, as a user's adaptation does; the outer loss scores the adapted model on a query
that holds anomalies and rewards separating them.

The score is the one the vector contract exports (:func:`~metaae_edge.contracts.reference.
vector_score`: the mean squared model-space reconstruction error of each row, ``recon - z``
with ``z`` the support-standardised input), so what meta-training ranks is what the
bundle's ``score`` output ranks.

``ranking``: a pairwise AUC surrogate, the mean over (normal, anomaly) pairs of
``softplus((log s_normal - log s_anomaly) / t)``. On log scores, because ROC-AUC is
invariant to monotone maps and the scores of a task span decades (an anomaly's error can
be 1000x a normal row's): the loss is scale-free across tasks. ``softplus(0) = log 2``
is a tie; a perfect margin tends to 0.

``mixed``: ``ranking`` plus the reconstruction loss of the normal query rows (their mean
score: the model-space MSE the reconstruction outer loss uses).

Both add the inner loop's resource penalty (``resource_lambda * E[cost]``), as the
reconstruction outer loss does, so the architecture search keeps its cost trade-off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..contracts.reference import vector_score
from ..errors import SpecError
from ..space import Supernet, alpha_of, arch_probs
from .inner import LossConfig, Params, TaskBatch, uses_basis

__all__ = ["OUTER_LOSSES", "RANKING_TEMPERATURE", "detection_loss", "ranking_loss",
           "sample_scores"]

#: ``MetaConfig.outer_loss`` choices (``reconstruction``: the query reconstruction loss)
OUTER_LOSSES: tuple[str, ...] = ("reconstruction", "ranking", "mixed")
#: temperature of the ranking surrogate on log scores (0.5: a factor e^0.5 = 1.65 between
#: an anomaly's and a normal row's score already costs < 0.32 of the tie's 0.69)
RANKING_TEMPERATURE = 0.5
_EPS = 1e-8


def ranking_loss(scores: torch.Tensor, labels: torch.Tensor,
                 temperature: float = RANKING_TEMPERATURE) -> torch.Tensor:
    """Mean over (normal, anomaly) pairs of ``softplus((log s_n - log s_a) / t)``.

    Args:
        scores: (N,) non-negative anomaly scores (higher = more anomalous).
        labels: (N,) 1 for an anomaly, 0 for a normal row; both must occur.
        temperature: the surrogate's temperature on the log scale.
    """
    s = torch.log(scores + _EPS)
    normal, anomaly = s[labels == 0], s[labels == 1]
    if not len(normal) or not len(anomaly):
        raise SpecError("the ranking loss needs normal and anomalous query rows")
    return F.softplus((normal[:, None] - anomaly[None, :]) / temperature).mean()


def sample_scores(model: Supernet, params: Params, x_in: torch.Tensor,
                  basis: torch.Tensor | None, cfg: LossConfig,
                  generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(per-row exported score (N,), the architecture probabilities used) of the supernet
    at ``params`` on model-space inputs ``x_in``."""
    shape = tuple(x_in.shape)
    probs = arch_probs(model.constrain_alpha(alpha_of(params), shape), tau=cfg.tau,
                       mode=cfg.mode, generator=generator)
    args = (x_in, probs) if not uses_basis(model) else (x_in, probs, basis)
    recon, _ = functional_call(model, params, args)
    d = (recon - x_in).reshape(len(x_in), -1)
    return vector_score(d, 1.0 / d.shape[1]), probs


def detection_loss(model: Supernet, params: Params, batch: TaskBatch, cfg: LossConfig,
                   outer_loss: str, generator: torch.Generator | None = None,
                   penalties: bool = True) -> torch.Tensor:
    """The ``ranking`` or ``mixed`` outer loss of the adapted ``params`` on the task's
    labelled query (:attr:`TaskBatch.labelled_in`, :attr:`TaskBatch.labels`).

    Raises:
        SpecError: the task has no labelled query (not an ``anomaly`` task), or
            ``outer_loss`` is not ``ranking`` / ``mixed``.
    """
    if outer_loss not in ("ranking", "mixed"):
        raise SpecError(f"detection outer loss must be ranking or mixed, got {outer_loss!r}")
    if batch.labels is None or batch.labelled_in is None:
        raise SpecError(f"outer_loss {outer_loss} needs anomaly tasks (a query with labelled "
                        "anomalies): use --objective anomaly")
    scores, probs = sample_scores(model, params, batch.labelled_in, batch.basis, cfg,
                                  generator)
    loss = ranking_loss(scores, batch.labels)
    if outer_loss == "mixed":
        loss = loss + scores[batch.labels == 0].mean()
    if penalties and cfg.resource_lambda:
        loss = loss + cfg.resource_lambda * model.resource_cost(
            probs, tuple(batch.labelled_in.shape))
    return loss
