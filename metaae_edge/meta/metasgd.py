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

import math

import torch

from .algorithms import register_algorithm
from .learned_rule import AdamMoments, LearnedRule, base_lr, trainable_names

__all__ = ["STEP_SLOTS", "MetaSGD"]

#: inner steps with their own learned scale when ``MetaSGD.per_step``
STEP_SLOTS = 20


@register_algorithm
class MetaSGD(LearnedRule):
    """Meta-SGD over the supernet's weights and architecture logits."""

    name = "metasgd"
    #: outer Adam step of the log step sizes (0.05: a step size may change by ~5% a step)
    rule_lr = 5e-2
    #: the log step sizes' start (0: the rule starts as the gradient learner's Adam)
    init_log_size = 0.0
    #: also a learned log scale per parameter tensor and inner step (``log_step.<name>``,
    #: :data:`STEP_SLOTS` steps; later steps use the last), added to ``u``: a schedule
    per_step = False
    #: ``MetaConfig.rule_preset``: ``k5`` (log step sizes from log 2, per-step scales),
    #: chosen on meta-validation tasks for K_train = 5 (docs/learners.md); it measured
    #: worse at K_train = 10, so it is not the default. ``k5so``: log step sizes from 0
    #: (the inner Adam lr), per-step scales, second-order meta-gradients
    #: (:attr:`second_order`), chosen on meta-validation for K_train = 5 (docs/learners.md)
    PRESETS = {"k5": {"init_log_size": math.log(2.0), "per_step": True},
               "k5so": {"init_log_size": 0.0, "per_step": True, "second_order": True}}
    #: outer Adam step of the per-step scales (one per tensor: its gradient sums over the
    #: tensor's coordinates, so it moves coherently; at the log sizes' 0.05 a scale could
    #: drift by 4.5 in 90 meta-steps)
    step_lr = 1e-2
    #: also a learned signed linear scale per parameter (``scale.<name>``, from 1),
    #: multiplied onto ``exp(u)``: as the original Meta-SGD's alpha vector, a step size
    #: may reach 0 or turn negative (the log scale alone keeps it positive)
    signed = False
    #: outer Adam step of the signed scales
    scale_lr = 1e-2

    def __init__(self, model):
        super().__init__(model)
        self.log_size = {
            f"log_size.{k}": torch.nn.Parameter(torch.full_like(v.detach(), self.init_log_size))
            for k, v in model.named_parameters()}
        self.log_step = self._new_steps() if self.per_step else {}
        self.scale = self._new_scales() if self.signed else {}

    def named_parameters(self):
        return {**self.log_size, **self.log_step, **self.scale}

    def param_groups(self, cfg):
        groups = [{"params": list(self.log_size.values()), "lr": self.rule_lr}]
        if self.log_step:
            groups.append({"params": list(self.log_step.values()), "lr": self.step_lr})
        if self.scale:
            groups.append({"params": list(self.scale.values()), "lr": self.scale_lr})
        return groups

    def apply_preset(self, settings):
        super().apply_preset(settings)
        with torch.no_grad():
            for u in self.log_size.values():
                u.fill_(self.init_log_size)
        if self.per_step and not self.log_step:
            self.log_step = self._new_steps()
        if self.signed and not self.scale:
            self.scale = self._new_scales()

    def match_state(self, state):
        """A checkpoint with per-step (signed) scales gets them whatever :attr:`per_step`
        (:attr:`signed`) says."""
        if not self.log_step and any(k.startswith("log_step.") for k in state):
            self.log_step = self._new_steps()
        if not self.scale and any(k.startswith("scale.") for k in state):
            self.scale = self._new_scales()

    def _new_steps(self) -> dict[str, torch.nn.Parameter]:
        """Zero per-step scales (the rule unchanged), one vector per parameter tensor."""
        return {f"log_step.{n[len('log_size.'):]}": torch.nn.Parameter(
                    torch.zeros(STEP_SLOTS, device=u.device)) for n, u in self.log_size.items()}

    def _new_scales(self) -> dict[str, torch.nn.Parameter]:
        """Unit signed scales (the rule unchanged), one per parameter coordinate."""
        return {f"scale.{n[len('log_size.'):]}": torch.nn.Parameter(torch.ones_like(u.detach()))
                for n, u in self.log_size.items()}

    def load_state_dict(self, state):
        # a checkpoint from before the per-step / signed scales: neutral ones, the same rule
        if self.log_step and not any(k.startswith("log_step.") for k in state):
            state = {**state, **{k: torch.zeros_like(v) for k, v in self.log_step.items()}}
        if self.scale and not any(k.startswith("scale.") for k in state):
            state = {**state, **{k: torch.ones_like(v) for k, v in self.scale.items()}}
        super().load_state_dict(state)

    def _rate(self, k: str, step: int) -> torch.Tensor:
        """The step size factor of parameter ``k`` at inner step ``step``."""
        u = self.log_size[f"log_size.{k}"]
        if self.log_step:
            u = u + self.log_step[f"log_step.{k}"][min(step, STEP_SLOTS - 1)]
        return u.exp() * self.scale[f"scale.{k}"] if self.scale else u.exp()

    def rule(self, params, inner, train):
        names = set(trainable_names(params, inner))
        moments = AdamMoments(graph=train and self.second_order)

        def update(p, grads, step):
            new = {}
            for k, v in p.items():
                if k not in names:
                    new[k] = v
                    continue
                d = moments.direction(k, grads[k], step)
                new[k] = v - base_lr(k, inner) * self._rate(k, step) * d
            return new

        return update
