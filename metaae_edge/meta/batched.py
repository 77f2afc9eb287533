"""The inner loops of a meta-batch's tasks as one :func:`torch.func.vmap` (single process).

:class:`~metaae_edge.meta.MetaTrainer` runs the tasks of a meta-batch one after the other;
on CPU the supernets are small enough that per-op overhead dominates, so running the
tasks' inner loops stacked (one vmapped forward per step, one backward of the summed
losses, the Adam update on stacked tensors) is faster (docs/distributed.md, "vmap").

The batched run is the loop's arithmetic, task by task:

* **padding**: tasks with different feature counts ``D`` or row counts ``N`` are
  zero-padded to the largest; a mask keeps each task's loss the mean over its own real
  entries, and the padding gets exactly zero gradient (an MLP's rows are independent, its
  first / last layers are sliced to ``D``, so padded input columns meet zero inputs and
  padded output rows are masked out). The standardisation is each task's own
  (:func:`~metaae_edge.meta.inner.make_batch`, before padding);
* **penalties** (resource cost, latent budget) are priced at each task's real shape
  (:class:`~metaae_edge.meta.inner.LossBatch` ``shapes`` / ``shape_onehot``);
* **randomness**: the Gumbel noise of every inner step (and of FOMAML / MAML's query
  loss) is drawn before the vmap from each task's own generator, in the loop's order
  (task by task, step by step, choice by choice), so a shared serial stream and the
  distributed per-task streams both give the loop's draws; the training-loss figure's
  draws come from the global RNG, task by task, as in the loop.

Where vmap does not apply, :func:`task_updates` runs the loop: learners other than
Reptile / FOMAML / MAML (Meta-SGD, the LSTM rule, the metric learner: their own update
rules and retrieval), non-MLP search spaces (conv / denoiser: images of different sizes
cannot be padded exactly), tasks of different loss kinds, per-task inner settings (latent
budgets drawn per task), a detection outer loss (``outer_loss`` ranking / mixed: its
query pairs are per task), or a single task.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.func import vmap

from ..space import ARCH_PREFIX, MLPSupernet, Supernet, alpha_of, bottleneck_search
from .algorithms import FOMAML, MAML, MetaAlgorithm, Reptile, TaskUpdate
from .inner import InnerConfig, LossBatch, LossConfig, Params, TaskBatch, _step, task_loss, tau_at

if TYPE_CHECKING:
    from .learners import MetaTrainer

__all__ = ["AUTO_MIN_TASKS", "BATCH_TASKS", "Padded", "batchable", "batched_inner_loop",
           "batched_updates", "pad_tasks", "task_updates", "use_batched"]

#: ``MetaConfig.batch_tasks`` / ``meta-train --batch-tasks`` choices
BATCH_TASKS = ("auto", "on", "off")
#: the learners whose task update this module batches (exact types: a subclass may
#: change the update)
_BATCHED = (Reptile, FOMAML, MAML)
Noise = list[dict[str, torch.Tensor]]
#: ``auto`` batches from this many tasks per process on (CPU; measured with
#: scripts/bench_vmap.py: 2 tasks 0.85-1.0x, 3 tasks 1.1-1.5x, docs/distributed.md); GPUs
#: were not measured, so ``auto`` leaves them to the loop (``on`` batches there too)
AUTO_MIN_TASKS = 3


@dataclass
class Padded:
    """One set (support or query) of T tasks, padded: stacked tensors + static info."""

    tensors: dict[str, torch.Tensor]  # x, y, mask, onehot (T, ...), basis if any
    shapes: tuple[tuple[int, ...], ...]  # the distinct real batch shapes
    loss: str

    def loss_batch(self, t: dict[str, torch.Tensor]) -> LossBatch:
        """One task's :class:`LossBatch` from its slice ``t`` of :attr:`tensors`."""
        return LossBatch(t["x"], t["y"], self.loss, t.get("basis"), t["mask"], self.shapes,
                         t["onehot"])


def _pad(xs: list[torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    out = xs[0].new_zeros((len(xs), *shape))
    for i, x in enumerate(xs):
        out[(i, *(slice(0, n) for n in x.shape))] = x
    return out


def _pad_set(ins: list[torch.Tensor], targets: list[torch.Tensor],
             bases: list[torch.Tensor] | None, loss: str) -> Padded:
    big = tuple(max(x.shape[i] for x in ins) for i in range(ins[0].dim()))
    shapes = tuple(dict.fromkeys(tuple(x.shape) for x in ins))
    onehot = torch.zeros(len(ins), len(shapes), device=ins[0].device)
    for i, x in enumerate(ins):
        onehot[i, shapes.index(tuple(x.shape))] = 1.0
    tensors = {"x": _pad(ins, big), "y": _pad(targets, big),
               "mask": _pad([torch.ones_like(y) for y in targets], big), "onehot": onehot}
    if bases is not None:
        tensors["basis"] = _pad(bases, tuple(max(b.shape[i] for b in bases) for i in (0, 1)))
    return Padded(tensors, shapes, loss)


def pad_tasks(batches: list[TaskBatch]) -> tuple[Padded, Padded]:
    """The support and query sets of ``batches`` (vector tasks, one loss kind), padded."""
    bases = None if batches[0].basis is None else [b.basis for b in batches]
    loss = batches[0].loss
    return (_pad_set([b.support_in for b in batches], [b.support_target for b in batches],
                     bases, loss),
            _pad_set([b.query_in for b in batches], [b.query_target for b in batches],
                     bases, loss))


def batchable(algorithm: MetaAlgorithm, batches: list[TaskBatch],
              inners: list[InnerConfig]) -> bool:
    """Whether vmap reproduces the loop for these tasks (see the module docstring)."""
    model = algorithm.model
    return (len(batches) >= 2 and type(algorithm) in _BATCHED
            and getattr(algorithm, "outer_loss", "reconstruction") == "reconstruction"
            and isinstance(model, MLPSupernet)
            and type(model).constrain_alpha is Supernet.constrain_alpha
            and all(i == inners[0] for i in inners)
            and len({b.loss for b in batches}) == 1
            and len({b.basis is None for b in batches}) == 1
            and all(b.support_in.dim() == 2 for b in batches))


def use_batched(setting: str, algorithm: MetaAlgorithm, batches: list[TaskBatch],
                inners: list[InnerConfig]) -> bool:
    """``off``: never; ``on``: wherever :func:`batchable`; ``auto``: where it measurably
    pays: on CPU, from :data:`AUTO_MIN_TASKS` tasks per process (docs/distributed.md)."""
    if setting == "off" or not batchable(algorithm, batches, inners):
        return False
    return setting == "on" or (len(batches) >= AUTO_MIN_TASKS
                               and batches[0].support_in.device.type == "cpu")


def _draw(alpha: dict[str, torch.Tensor], gens: list[torch.Generator | None], draws: int,
          device: torch.device) -> Noise:
    """Uniform noise for ``draws`` Gumbel relaxations per task, as the loop draws it:
    task by task from its own generator (``None``: the global RNG), each draw one
    ``torch.rand`` per choice in ``alpha``'s order; stacked as ``[draw][name] (T, ...)``."""
    per_task = [[{k: torch.rand(v.shape, generator=g, device="cpu") for k, v in alpha.items()}
                 for _ in range(draws)] for g in gens]
    return [{k: torch.stack([t[d][k] for t in per_task]).to(device) for k in alpha}
            for d in range(draws)]


def _gumbel_probs(alpha: dict[str, torch.Tensor], u: dict[str, torch.Tensor],
                  tau: float) -> dict[str, torch.Tensor]:
    """:func:`~metaae_edge.space.arch_probs` ``mode="gumbel"`` with the noise ``u`` given."""
    out = {}
    for name, logits in alpha.items():
        g = -torch.log((-torch.log(u[name].clamp_min(1e-10))).clamp_min(1e-10))
        out[name] = F.softmax((logits + g) / tau, dim=-1)
    return out


def _losses(model: Supernet, params: Params, data: Padded, cfg: LossConfig,
            noise: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """The T tasks' losses (T,) at stacked ``params`` (one vmapped forward)."""

    def one(p: Params, t: dict[str, torch.Tensor], u: dict[str, torch.Tensor] | None):
        probs = None if u is None else _gumbel_probs(alpha_of(p), u, cfg.tau)
        return task_loss(model, p, data.loss_batch(t), cfg, probs=probs)

    return vmap(one, in_dims=(0, 0, None if noise is None else 0))(params, data.tensors, noise)


def _grads(losses: torch.Tensor, leaves: Params, create_graph: bool = False) -> Params:
    """Per-task gradients: the T losses are independent, so the gradient of their sum
    with respect to the stacked parameters is each task's own (unused: zeros)."""
    raw = torch.autograd.grad(losses.sum(), list(leaves.values()), allow_unused=True,
                              create_graph=create_graph)
    return {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), raw)}


def batched_inner_loop(model: Supernet, params: Params, support: Padded, cfg: InnerConfig, *,
                       mode: str = "softmax", noise: Noise | None = None,
                       first_order: bool = True) -> Params:
    """:func:`~metaae_edge.meta.inner.inner_loop` of T tasks at once.

    ``params`` are stacked (T, ...) (with ``first_order=False`` they may carry a graph:
    second-order MAML differentiates through the steps); ``noise``: the uniform draws of
    each step (``mode="gumbel"``, :func:`_draw`). Returns the stacked adapted parameters.
    """
    lrs = {k: (cfg.lr_a if k.startswith(ARCH_PREFIX) else cfg.lr_w) for k in params}
    trainable = {k: (cfg.adapt_alpha if k.startswith(ARCH_PREFIX) else cfg.adapt_weights)
                 for k in params}
    state: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    p = dict(params)
    for step in range(cfg.steps):
        lc = cfg.loss_config(tau_at(cfg, step), mode)
        leaves = {k: v.detach().requires_grad_(True) for k, v in p.items()} if first_order else p
        losses = _losses(model, leaves, support, lc, None if noise is None else noise[step])
        grads = _grads(losses, leaves, create_graph=not first_order)
        p = _step(p, grads, cfg, lrs, trainable, state, step, first_order)
    return p


def batched_updates(algorithm: MetaAlgorithm, params: Params, batches: list[TaskBatch],
                    inner: InnerConfig, mode: str,
                    generators: list[torch.Generator]) -> list[TaskUpdate]:
    """Each task's :meth:`~metaae_edge.meta.MetaAlgorithm.task_update` (Reptile, FOMAML,
    MAML), computed for all tasks at once; equal to the loop's within float32 rounding."""
    model, n = algorithm.model, len(batches)
    support, query = pad_tasks(batches)
    gumbel = mode == "gumbel"
    alpha = alpha_of(params)
    second = type(algorithm) is MAML
    queried = type(algorithm) in (FOMAML, MAML)  # the query loss draws once more
    noise = _draw(alpha, generators, inner.steps + queried, params[next(iter(params))].device
                  ) if gumbel else None
    stacked = {k: v.unsqueeze(0).expand(n, *v.shape).clone() for k, v in params.items()}
    q_cfg = inner.loss_config(inner.tau_end, mode)
    q_noise = noise[-1] if gumbel and queried else None
    if second:
        leaves = {k: v.requires_grad_(True) for k, v in stacked.items()}
        adapted = batched_inner_loop(model, leaves, support, inner, mode=mode, noise=noise,
                                     first_order=False)
        losses = _losses(model, adapted, query, q_cfg, q_noise)
        g = _grads(losses, leaves)  # the differentiated loss is also the reported one
        return [TaskUpdate({k: v[t] for k, v in g.items()}, query_loss=float(losses[t]))
                for t in range(n)]
    adapted = batched_inner_loop(model, stacked, support, inner, mode=mode, noise=noise)
    if queried:
        leaves = {k: v.detach().requires_grad_(True) for k, v in adapted.items()}
        g = _grads(_losses(model, leaves, query, q_cfg, q_noise), leaves)
    else:
        g = {k: params[k].unsqueeze(0) - adapted[k] for k in params}
    report = _report_losses(model, alpha, adapted, query, inner, mode, n)
    return [TaskUpdate({k: v[t] for k, v in g.items()}, {k: v[t] for k, v in adapted.items()},
                       report[t]) for t in range(n)]


@torch.no_grad()
def _report_losses(model: Supernet, alpha: dict[str, torch.Tensor], adapted: Params,
                   query: Padded, inner: InnerConfig, mode: str, n: int) -> list[float]:
    """The training-loss figures (:meth:`MetaAlgorithm._report_loss`): no penalties,
    Gumbel noise from the global RNG task by task, as the loop draws it."""
    cfg = replace(inner.loss_config(inner.tau_end, mode), resource_lambda=0.0,
                  latent_budget=0.0)
    noise = (_draw(alpha, [None] * n, 1, query.tensors["x"].device)[0] if mode == "gumbel"
             else None)
    return [float(v) for v in _losses(model, adapted, query, cfg, noise)]


def task_updates(trainer: MetaTrainer, slots, warm: bool, mode: str, gens: dict,
                 params: Params) -> Iterator[tuple[float, TaskUpdate]]:
    """``(budget, TaskUpdate)`` of each slot of this meta-step, in slot order: batched
    where :func:`use_batched` says so, else the loop (each task sampled, then adapted)."""
    cfg, algo = trainer.cfg, trainer.algorithm
    setting = getattr(cfg, "batch_tasks", "auto")
    tasks = []
    for b in slots:
        index = trainer.step * cfg.meta_batch + b
        task, batch = trainer._train_task(index)
        budget = trainer.latent_budget(task, index)
        tasks.append((b, budget, batch, trainer._task_inner(warm, budget)))
        if setting == "off":  # the loop as it always ran: adapt each task as it comes
            yield budget, _one(trainer, tasks.pop(), mode, gens, params)
    if not tasks:
        return
    batches, inners = [t[2] for t in tasks], [t[3] for t in tasks]
    if use_batched(setting, algo, batches, inners):
        ups = batched_updates(algo, params, batches, inners[0], mode, [gens[t[0]] for t in tasks])
        yield from ((t[1], u) for t, u in zip(tasks, ups))
        return
    for t in tasks:
        yield t[1], _one(trainer, t, mode, gens, params)


def _one(trainer: MetaTrainer, task: tuple, mode: str, gens: dict, params: Params) -> TaskUpdate:
    b, budget, batch, inner = task
    with bottleneck_search(trainer.model, budget > 0):
        return trainer.algorithm.task_update(params, batch, inner, mode, gens[b])
