"""A coordinate-wise LSTM optimiser (Andrychowicz et al., 2016; Ravi & Larochelle, 2017).

One small LSTM cell, shared by every coordinate of every parameter (weights and
architecture logits), reads per coordinate and step: the gradient preprocessed as in
Andrychowicz et al. (``(log|g| / p, sign g)`` for ``|g| >= e^-p``, else ``(-1, e^p g)``,
``p = 10``), the Adam-normalised gradient ``d`` of the task's inner loop, and whether the
coordinate is an architecture logit. Its hidden state carries over the inner steps.
A linear head gives a gain ``a`` and an offset ``b`` per coordinate and the update is
``theta - lr * (exp(2 tanh(a / 2)) d + tanh(b))`` (``lr``: the inner loop's ``lr_w`` /
``lr_a``). The head starts at zero, so the rule starts as the gradient learner's Adam and
the LSTM learns how to depart from it. Trained by truncated back-propagation through the
K inner steps (:mod:`~metaae_edge.meta.learned_rule`).
"""

from __future__ import annotations

import math

import torch

from ..space import ARCH_PREFIX
from .algorithms import register_algorithm
from .learned_rule import AdamMoments, LearnedRule, base_lr, trainable_names

__all__ = ["HIDDEN", "LSTMRule", "preprocess"]

HIDDEN = 8
_P = 10.0


def preprocess(g: torch.Tensor) -> torch.Tensor:
    """Andrychowicz et al.'s gradient preprocessing, (N,) -> (N, 2)."""
    big = g.abs() >= math.exp(-_P)
    first = torch.where(big, torch.log(g.abs().clamp_min(1e-38)) / _P, -torch.ones_like(g))
    second = torch.where(big, torch.sign(g), g * math.exp(_P))
    return torch.stack([first, second], dim=1)


@register_algorithm
class LSTMRule(LearnedRule):
    """The coordinate-wise LSTM update rule over weights and architecture logits."""

    name = "lstm"
    rule_lr = 3e-3

    def __init__(self, model):
        super().__init__(model)
        self.cell = torch.nn.LSTMCell(4, HIDDEN)
        self.head = torch.nn.Linear(HIDDEN, 2)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()

    def named_parameters(self):
        return {**{f"cell.{k}": v for k, v in self.cell.named_parameters()},
                **{f"head.{k}": v for k, v in self.head.named_parameters()}}

    def rule(self, params, inner, train):
        names = [k for k in params if k in set(trainable_names(params, inner))]
        sizes = [params[k].numel() for k in names]
        lr = torch.cat([torch.full((n,), base_lr(k, inner)) for k, n in zip(names, sizes)]) \
            if names else torch.zeros(0)
        is_arch = torch.cat([torch.full((n,), float(k.startswith(ARCH_PREFIX)))
                             for k, n in zip(names, sizes)]) if names else torch.zeros(0)
        moments = AdamMoments()
        hidden: list[tuple[torch.Tensor, torch.Tensor] | None] = [None]

        def update(p, grads, step):
            if not names:
                return dict(p)
            g = torch.cat([grads[k].detach().reshape(-1) for k in names])
            d = torch.cat([moments.direction(k, grads[k], step).reshape(-1) for k in names])
            x = torch.cat([preprocess(g), d.clamp(-10, 10)[:, None], is_arch[:, None]], dim=1)
            h, c = self.cell(x, hidden[0])
            hidden[0] = (h, c)
            out = self.head(h)
            delta = lr * (torch.exp(2 * torch.tanh(out[:, 0] / 2)) * d + torch.tanh(out[:, 1]))
            new, at = dict(p), 0
            for k, n in zip(names, sizes):
                new[k] = p[k] - delta[at:at + n].reshape(p[k].shape)
                at += n
            return new

        return update
