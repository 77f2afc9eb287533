"""The metric-based meta-learner: embed a task, retrieve an architecture prototype.

A :class:`~metaae_edge.meta.set_encoder.SetEncoder` embeds a task's support set
(permutation-invariant in its rows). :data:`PROTOTYPES` prototypes live in that space, each
with a centre and its own starting point: the shared meta-parameters plus a learned offset
of every weight and every ``arch.*`` logit (its own architecture, ``alpha``, and its own
initialisation). Adaptation retrieves the nearest prototype (no gradient steps: the
architecture and the starting weights) and then runs the K inner steps from it.

Meta-training, per task:

1. the gradient learner's per-task search: the inner loop from the shared
   meta-parameters (their Reptile update, so the checkpoint also holds a gradient learner);
2. the task's label: the prototype whose architecture (choice probabilities) is nearest
   to the one that search adapted to;
3. a prototypical loss (cross-entropy over negative squared distances to the centres)
   trains the encoder and the centres towards that label;
4. the labelled prototype's start moves towards the task's adapted parameters (a Reptile
   step on the prototype: online k-means of the adapted weights and architectures).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ..space import ARCH_PREFIX
from .algorithms import MetaAlgorithm, TaskUpdate, register_algorithm
from .inner import Params, inner_loop
from .set_encoder import EMBED_DIM, SetEncoder

__all__ = ["PROTOTYPES", "MetricLearner"]

PROTOTYPES = 4
#: the offsets are stored scaled: the outer Adam's step on a weight offset is this times
#: the learner's step size (weights move slower than architecture logits, as in Reptile)
WEIGHT_OFFSET_SCALE = 0.3


def _scale(k: str) -> float:
    return 1.0 if k.startswith(ARCH_PREFIX) else WEIGHT_OFFSET_SCALE


@register_algorithm
class MetricLearner(MetaAlgorithm):
    """Prototypes of architecture + initialisation, retrieved by a set encoder."""

    name = "metric"

    def __init__(self, model):
        super().__init__(model)
        self.encoder = SetEncoder()
        self.centres = torch.nn.Parameter(torch.randn(PROTOTYPES, EMBED_DIM) * 0.5)
        self.offset: dict[str, torch.nn.Parameter] = {}
        for k, v in model.named_parameters():
            init = torch.zeros(PROTOTYPES, *v.shape)
            if k.startswith(ARCH_PREFIX):  # distinct architectures to start from
                init.normal_(0.0, 0.5)
            self.offset[f"offset.{k}"] = torch.nn.Parameter(init)
        self.last: dict = {}

    def outer_lr(self, cfg) -> float:
        return 3e-3

    def named_parameters(self):
        return {**{f"encoder.{k}": v for k, v in self.encoder.named_parameters()},
                "centres": self.centres, **self.offset}

    def prototype(self, params: Params, index: int) -> Params:
        """Prototype ``index``'s starting point: the shared parameters plus its offset."""
        return {k: params[k] + _scale(k) * self.offset[f"offset.{k}"][index].detach()
                for k in params}

    def logits(self, support: torch.Tensor) -> torch.Tensor:
        """Negative squared distances of the task embedding to the prototype centres."""
        emb = self.encoder(support)
        return -(emb[None, :] - self.centres).pow(2).sum(dim=1)

    def label(self, params: Params, adapted: Params) -> int:
        """The prototype whose architecture is nearest to the adapted one (L1 distance
        of the choice probabilities, summed over the decisions)."""
        with torch.no_grad():
            dist = torch.zeros(PROTOTYPES)
            for k in (k for k in params if k.startswith(ARCH_PREFIX)):
                target = adapted[k].softmax(dim=-1)
                protos = (params[k][None] + self.offset[f"offset.{k}"]).softmax(dim=-1)
                dist += (protos - target[None]).abs().reshape(PROTOTYPES, -1).sum(dim=1)
        return int(dist.argmin())

    def task_update(self, params, batch, inner, mode, generator):
        adapted = inner_loop(self.model, params, batch, inner, mode=mode, generator=generator)
        g = {k: params[k] - adapted[k] for k in params}
        y = self.label(params, adapted)
        loss = F.cross_entropy(self.logits(batch.support_in)[None], torch.tensor([y]))
        enc = {f"encoder.{k}": v for k, v in self.encoder.named_parameters()}
        raw = torch.autograd.grad(loss, [*enc.values(), self.centres])
        learner_grad = dict(zip([*enc, "centres"], raw))
        start = self.prototype(params, y)
        for k in params:
            d = torch.zeros_like(self.offset[f"offset.{k}"])
            d[y] = start[k] - adapted[k]
            learner_grad[f"offset.{k}"] = d
        return TaskUpdate(g, adapted, self._report_loss(adapted, batch, inner, mode),
                          learner_grad)

    def retrieve(self, params: Params, support: torch.Tensor) -> tuple[int, Params]:
        """The nearest prototype of a support set and its starting point."""
        with torch.no_grad():
            y = int(self.logits(support).argmax())
            return y, self.prototype(params, y)

    def adapt(self, params, batch, inner, *, on_step=None):
        t0 = time.perf_counter()
        y, start = self.retrieve(params, batch.support_in)
        self.last = {"prototype": y, "retrieval_ms": 1e3 * (time.perf_counter() - t0)}
        return inner_loop(self.model, start, batch, inner, on_step=on_step)

    def describe_adaptation(self) -> dict:
        return dict(self.last)
