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

#: hidden units of the shared cell (4: the cell runs over every one of the supernet's
#: ~1e5 coordinates each inner step; 8 measured 2-3x slower per meta-step on this CPU)
HIDDEN = 4
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
        bound = 1.0 / math.sqrt(HIDDEN)
        self.cell_w = torch.nn.Parameter(torch.empty(4 + HIDDEN, 4 * HIDDEN).uniform_(
            -bound, bound))
        bias = torch.zeros(4 * HIDDEN)
        bias[HIDDEN:2 * HIDDEN] = 1.0  # forget gate open at the start
        self.cell_b = torch.nn.Parameter(bias)
        self.head_w = torch.nn.Parameter(torch.zeros(HIDDEN, 2))
        self.head_b = torch.nn.Parameter(torch.zeros(2))

    def named_parameters(self):
        return {"cell.weight": self.cell_w, "cell.bias": self.cell_b,
                "head.weight": self.head_w, "head.bias": self.head_b}

    def cell(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None):
        """One step of the shared LSTM cell over (N, 4) inputs (one matmul for all gates)."""
        if state is None:
            zero = x.new_zeros(len(x), HIDDEN)
            state = (zero, zero)
        h, c = state
        i, f, g, o = torch.addmm(self.cell_b, torch.cat([x, h], dim=1), self.cell_w).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

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
            out = torch.addmm(self.head_b, h, self.head_w)
            delta = lr * (torch.exp(2 * torch.tanh(out[:, 0] / 2)) * d + torch.tanh(out[:, 1]))
            new, at = dict(p), 0
            for k, n in zip(names, sizes):
                new[k] = p[k] - delta[at:at + n].reshape(p[k].shape)
                at += n
            return new

        return update
