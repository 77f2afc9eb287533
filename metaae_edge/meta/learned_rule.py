"""Model-based meta-learners: a learned update rule replaces Adam in the inner loop.

A :class:`LearnedRule` learner owns tensors that define the inner-loop update
(:meth:`LearnedRule.rule`); it runs through the shared inner loop
(:func:`~metaae_edge.meta.inner.inner_loop`, its ``update`` hook) for both meta-training
and adaptation. Meta-training is first order in the supernet parameters (their inner
gradients are constants, as in FOMAML) and exact in the rule's own tensors: the adapted
parameters keep the graph the rule built over the K inner steps, and the query-loss
gradient at the adapted parameters is pulled back through it (a vector-Jacobian product).
The supernet itself gets the gradient learner's Reptile direction (``theta -
theta_adapted``, from the learned rule's adaptation): with the FOMAML direction instead, 120
meta-steps left the one-step query loss on held-out manifold tasks at 1.18 against
Reptile's 0.86 (docs/learners.md). ``second_order`` (Meta-SGD) differentiates through
the inner gradients as well: the exact meta-gradient of the K-step query loss.

At adaptation the learned rule runs for the first ``horizon`` steps (the meta-training
inner steps K); any further steps are the inner loop's own optimiser (Adam).
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from ..space import ARCH_PREFIX
from .algorithms import MetaAlgorithm, TaskUpdate
from .inner import InnerConfig, Params, TaskBatch, inner_loop

__all__ = ["AdamMoments", "LearnedRule", "trainable_names"]


class AdamMoments:
    """Adam's moment estimates of one task's inner loop (constants, not learned): the
    normalised direction ``m_hat / (sqrt(s_hat) + eps)`` the learned rules scale. With
    unit scales it is exactly the inner loop's own Adam (``meta/inner.py``).

    ``graph`` (second-order meta-training, :attr:`LearnedRule.second_order`): both
    moments keep the gradients' graph, so the direction is differentiable in the
    parameters the gradients were taken at (matches finite differences in float64); the
    second moment is floored at 1e-30 there (a coordinate with an exactly-zero gradient:
    its derivative would be NaN, its value moves by 1e-15 against eps = 1e-8).
    """

    def __init__(self, graph: bool = False) -> None:
        self.state: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.graph = graph

    def direction(self, k: str, g: torch.Tensor, step: int) -> torch.Tensor:
        g = g if self.graph else g.detach()
        m, s = self.state.get(k, (torch.zeros_like(g), torch.zeros_like(g)))
        m = 0.9 * m + 0.1 * g
        s = 0.999 * s + 0.001 * g * g
        self.state[k] = (m, s)
        t = step + 1
        s_hat = s / (1 - 0.999**t)
        if self.graph:  # sqrt's derivative at an exactly-zero gradient is inf * 0 = NaN
            s_hat = s_hat.clamp_min(1e-30)
        return (m / (1 - 0.9**t)) / (s_hat.sqrt() + 1e-8)


def base_lr(k: str, inner: InnerConfig) -> float:
    """The inner step size of parameter ``k`` (architecture logits or weights)."""
    return inner.lr_a if k.startswith(ARCH_PREFIX) else inner.lr_w


def trainable_names(params: Params, inner: InnerConfig) -> list[str]:
    """The parameter names the inner loop may change under ``inner``'s flags."""
    return [k for k in params
            if (inner.adapt_alpha if k.startswith(ARCH_PREFIX) else inner.adapt_weights)]


class LearnedRule(MetaAlgorithm):
    """Base of the model-based learners (Meta-SGD, the LSTM optimiser)."""

    #: the meta-training inner steps K (set from the checkpoint at adaptation): the
    #: learned rule runs for the first ``horizon`` steps, the inner optimiser after
    horizon: int | None = None
    #: outer step size of the rule's own tensors
    rule_lr: float = 1e-2
    #: the supernet's outer direction: ``reptile`` (``theta - theta_adapted``) or
    #: ``query`` (the query-loss gradient at the adapted parameters, first order in the
    #: inner gradients: the init and the rule learned jointly from one loss, FOMAML-like)
    init_direction: str = "reptile"
    #: second-order meta-training (:meth:`_second_order_update`): the meta-gradient also
    #: flows through the inner gradients (Hessian-vector products, through both Adam
    #: moments), as in MAML; honoured where :meth:`rule` passes it to its
    #: :class:`AdamMoments` (Meta-SGD)
    second_order: bool = False

    def outer_lr(self, cfg) -> float:
        return self.rule_lr

    @abstractmethod
    def rule(self, params: Params, inner: InnerConfig, train: bool):
        """A fresh update function ``(params, grads, step) -> new params | None`` for one
        task (state such as LSTM cells lives in its closure)."""

    def task_update(self, params, batch, inner, mode, generator):
        if self.second_order:
            return self._second_order_update(params, batch, inner, mode, generator)
        adapted = inner_loop(self.model, params, batch, inner, mode=mode, generator=generator,
                             update=self.rule(params, inner, train=True))
        leaves = {k: v.detach().requires_grad_(True) for k, v in adapted.items()}
        loss = self._query_loss(leaves, batch, inner, mode, generator)
        names = list(leaves)
        raw = torch.autograd.grad(loss, [leaves[k] for k in names], allow_unused=True)
        g = {k: torch.zeros_like(leaves[k]) if r is None else r for k, r in zip(names, raw)}
        own = self.named_parameters()
        outs = [k for k in names if adapted[k].requires_grad]
        learner_grad = {k: torch.zeros_like(v) for k, v in own.items()}
        if outs:
            pulled = torch.autograd.grad([adapted[k] for k in outs], list(own.values()),
                                         grad_outputs=[g[k] for k in outs], allow_unused=True)
            learner_grad = {k: torch.zeros_like(v) if r is None else r
                            for (k, v), r in zip(own.items(), pulled)}
        detached = {k: v.detach() for k, v in adapted.items()}
        if self.init_direction == "query":
            direction = {k: g[k] for k in params}
        else:
            direction = {k: params[k] - detached[k] for k in params}
        return TaskUpdate(direction, detached, self._report_loss(detached, batch, inner, mode),
                          learner_grad)

    def _second_order_update(self, params, batch, inner, mode, generator) -> TaskUpdate:
        """The exact meta-gradient of the query loss after the K inner steps (through
        both Adam moments): the inner loop keeps the graph of its gradients, the
        query loss is differentiated through it into the rule's tensors and, with
        ``init_direction = "query"``, into the initialisation (MAML through the learned
        rule); otherwise the supernet gets the Reptile direction."""
        query = self.init_direction == "query"
        start = {k: v.detach().requires_grad_(query) for k, v in params.items()}
        adapted = inner_loop(self.model, start, batch, inner, mode=mode, first_order=False,
                             generator=generator, update=self.rule(start, inner, train=True))
        loss = self._query_loss(adapted, batch, inner, mode, generator)
        own = self.named_parameters()
        wrt = [*own.values(), *(start.values() if query else ())]
        raw = torch.autograd.grad(loss, wrt, allow_unused=True)
        raw = [torch.zeros_like(t) if r is None else r for t, r in zip(wrt, raw)]
        learner_grad = dict(zip(own, raw[:len(own)]))
        detached = {k: v.detach() for k, v in adapted.items()}
        direction = (dict(zip(start, raw[len(own):])) if query
                     else {k: params[k] - detached[k] for k in params})
        return TaskUpdate(direction, detached, self._report_loss(detached, batch, inner, mode),
                          learner_grad)

    def adapt(self, params: Params, batch: TaskBatch, inner: InnerConfig, *,
              on_step=None) -> Params:
        train_rule = self.rule(params, inner, train=False)
        horizon = inner.steps if self.horizon is None else self.horizon

        def update(p, grads, step):
            if step >= horizon:
                return None  # past the meta-trained horizon: the inner optimiser
            with torch.no_grad():
                return train_rule(p, grads, step)

        return inner_loop(self.model, params, batch, inner, on_step=on_step, update=update)
