"""Meta-SGD (Li et al., 2017): a learned step size and direction per parameter.

The inner update is ``theta - lr * s (.) d``: ``s`` is a tensor of the parameter's shape
(one entry per weight and per architecture logit), initialised to 1 and free to change
sign (a learned direction as well as a size); ``lr`` is the inner loop's step size of the
kind (``lr_w`` / ``lr_a``) and ``d`` the Adam-normalised gradient of the task's inner loop
(its moments are constants, not learned). With ``s = 1`` the rule is exactly the gradient
learner's Adam inner loop, so meta-training starts from it. Plain Meta-SGD (``d`` = the raw
gradient) does not move these supernets: 10 SGD steps at lr 3 took the mean query loss of 4
manifold meta-training tasks from 1.075 to 1.073 (Adam at 0.01: 0.617), see
docs/learners.md. Trained through the shared inner loop
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
    rule_lr = 1e-2

    def __init__(self, model):
        super().__init__(model)
        self.scale = {f"scale.{k}": torch.nn.Parameter(torch.ones_like(v.detach()))
                      for k, v in model.named_parameters()}

    def named_parameters(self):
        return dict(self.scale)

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
                new[k] = v - base_lr(k, inner) * self.scale[f"scale.{k}"] * d
            return new

        return update
