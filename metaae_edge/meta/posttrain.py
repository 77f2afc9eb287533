"""Post-training: joint multi-task training of the supernet weights after meta-training.

The "train the found architectures" stage of NAS, over a distribution of them: per task,
one Adam step on the pooled support and query sets under a hard sub-network drawn from
the meta-learned ``alpha`` (with a latent budget drawn from ``posttrain_bpp`` for
reconstruct tasks, a sub-network that fits it) and under the relaxed mixture at a random
temperature. The adaptation later discretises to one sub-network, so those are the
weights that have to be good; meta-learning alone leaves them under-trained (see
docs/images.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..space import ARCH_PREFIX, Supernet, alpha_of, arch_probs, bottleneck_search
from ..tasks.base import Task
from .config import MetaConfig
from .distributed import TaskPlan
from .inner import LossConfig, TaskBatch, task_loss

__all__ = ["PostTrainer", "draw_subnetwork"]

#: training task ``index`` -> (task, its batch)
TaskSampler = Callable[[int], tuple[Task, TaskBatch]]
#: (task, index) -> its latent budget in values per sample (0 = none)
BudgetFn = Callable[[Task, int], float]


def draw_subnetwork(model: Supernet, alpha: dict[str, torch.Tensor], shape: tuple[int, ...],
                    budget: float, gen: torch.Generator,
                    tau: float = 1.0) -> dict[str, torch.Tensor]:
    """A hard sub-network drawn from ``softmax(alpha / tau)``; with a budget, one whose
    latent fits it (rejection, then the smallest latent as a fallback)."""
    alpha = model.constrain_alpha(alpha, shape)
    probs = arch_probs(alpha, tau=tau, mode="sample", generator=gen)
    if not budget:
        return probs
    for _ in range(256):
        if float(model.expected_latent_size(probs, shape)) <= budget:
            return probs
        probs = arch_probs(alpha, tau=tau, mode="sample", generator=gen)
    return model.smallest_latent(probs, shape)


class PostTrainer:
    """The post-training steps of a run: its own Adam (cosine-decayed step size) over
    the supernet weights, the same tensors as the outer optimiser's weight group.

    Its moments are checkpointed by :class:`~metaae_edge.meta.MetaTrainer` (``post.*``).

    Args:
        model: the supernet.
        cfg: the run's settings (``posttrain_*``, ``meta_batch``, ``seed``, ``inner``).
        weights: the weight tensors (the outer optimiser's group 0; never ``arch.*``).
        plan: this process's share of each step's tasks (default all of them).
    """

    def __init__(self, model: Supernet, cfg: MetaConfig, weights: list[torch.nn.Parameter],
                 plan: TaskPlan | None = None):
        self.model, self.cfg, self.plan, self.weights = model, cfg, plan or TaskPlan(), weights
        self.opt = torch.optim.Adam(weights, lr=cfg.posttrain_lr)

    def step(self, step: int, sample: TaskSampler, budget: BudgetFn) -> float:
        """Post-training step ``step`` (counted from the run's start) over ``meta_batch``
        tasks; returns the mean training loss. ``alpha`` is left untouched."""
        cfg = self.cfg
        slots = self.plan.slots(cfg.meta_batch)
        gens = self.plan.generators(cfg.seed * 1_000_003 + step, slots)
        frac = (step - cfg.meta_steps) / max(cfg.posttrain_steps, 1)
        for group in self.opt.param_groups:  # cosine decay: settled final weights
            group["lr"] = cfg.posttrain_lr * 0.5 * (1 + math.cos(math.pi * frac))
        self.opt.zero_grad(set_to_none=True)
        params = dict(self.model.named_parameters())
        alpha = {k: v.detach() for k, v in alpha_of(params).items()}
        losses = []
        for b in slots:
            index = step * cfg.meta_batch + b
            task, batch = sample(index)
            loss = self._task_loss(params, alpha, batch, budget(task, index), gens[b])
            (loss / cfg.meta_batch).backward()
            losses.append(float(loss.detach()))
        for name, p in self.model.named_parameters():
            if name.startswith(ARCH_PREFIX):
                p.grad = None
        loss = self.plan.sum_grads(self.weights, losses)  # over ranks (serial: as is)
        self.opt.step()
        return loss

    def _task_loss(self, params, alpha, batch: TaskBatch, budget: float,
                   gen: torch.Generator) -> torch.Tensor:
        """Mean of the loss under a drawn hard sub-network and the relaxed mixture."""
        inner, data = self.cfg.inner, batch.pooled()
        with bottleneck_search(self.model, budget > 0):
            hard = draw_subnetwork(self.model, alpha, tuple(data.x_in.shape), budget, gen,
                                   self.cfg.posttrain_tau)
            # and the relaxed mixture the adaptation starts from, at a random
            # temperature between the inner loop's first and last (log-uniform)
            u = float(torch.rand((), generator=gen))
            tau = inner.tau_end * (inner.tau_start / inner.tau_end) ** u
            return (task_loss(self.model, params, data, LossConfig(1.0), probs=hard)
                    + task_loss(self.model, params, data, LossConfig(tau, "softmax"))) / 2
