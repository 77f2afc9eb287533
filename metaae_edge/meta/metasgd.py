"""Meta-SGD (Li et al., 2017): a learned step size per parameter.

The inner update is ``theta - lr * exp(u) (.) d``. ``u`` has the parameter's shape (one
entry per weight and per architecture logit) and starts at 0; ``lr`` is the inner loop's
step size of the kind (``lr_w`` / ``lr_a``) and ``d`` the Adam-normalised gradient of the
task's inner loop (its moments are constants, not learned), so at ``u = 0`` the rule is
exactly the gradient learner's Adam inner loop and meta-training starts from it.

Two measured choices (docs/learners.md): plain Meta-SGD (``d`` = the raw gradient) does not
move these supernets (10 SGD steps at lr 3 took the mean query loss of 4 manifold
meta-training tasks from 1.075 to 1.073; Adam at 0.01: 0.617); and a signed linear scale
instead of ``exp(u)`` changed the one-step query loss by 0.1% in 12 meta-steps, the log
parametrisation lets a step size grow or shrink by orders of magnitude in a short run
(the direction is then Adam's). Trained through the shared inner loop
(:mod:`~metaae_edge.meta.learned_rule`).
"""

from __future__ import annotations

import torch

from .algorithms import register_algorithm
from .learned_rule import AdamMoments, LearnedRule, base_lr, trainable_names

__all__ = ["MetaSGD"]


@register_algorithm
class MetaSGD(LearnedRule):
    """Meta-SGD over the supernet's weights and architecture logits."""

    name = "metasgd"
    #: outer Adam step of the log step sizes (0.05: a step size may change by ~5% a step)
    rule_lr = 5e-2

    def __init__(self, model):
        super().__init__(model)
        self.log_size = {f"log_size.{k}": torch.nn.Parameter(torch.zeros_like(v.detach()))
                         for k, v in model.named_parameters()}

    def named_parameters(self):
        return dict(self.log_size)

    def rule(self, params, inner, train):
        names = set(trainable_names(params, inner))
        moments = AdamMoments()

        def update(p, grads, step):
            new = {}
            for k, v in p.items():
                if k not in names:
                    new[k] = v
                    continue
                d = moments.direction(k, grads[k], step)
                new[k] = v - base_lr(k, inner) * self.log_size[f"log_size.{k}"].exp() * d
            return new

        return update
