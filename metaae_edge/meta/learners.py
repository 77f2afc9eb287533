"""The meta-training loop over weights and architecture (MetaNAS recipe).

:class:`MetaTrainer` samples tasks, asks the run's :class:`~metaae_edge.meta.algorithms.
MetaAlgorithm` (``reptile``, ``fomaml``, ``maml``, or any registered learner) for each
task's contribution, averages them and steps one outer Adam. Weights and ``alpha`` get
separate outer step sizes; the first ``warmup_steps`` meta-steps train weights only, on
Gumbel-sampled sub-networks so every path gets trained; the inner temperature is annealed
over the inner steps so that adapted weights already work under a (nearly) hard
architecture; an optional resource penalty ``lambda * E[MACs]`` steers ``alpha`` towards
small networks.

Optionally, ``posttrain_steps`` of joint multi-task training follow
(:class:`~metaae_edge.meta.posttrain.PostTrainer`).

Conv spaces with a dense bottleneck (``SupernetConfig.dense_latents``): the bottleneck is
searched where a latent budget asks for compression, so only budgeted (reconstruct) tasks
draw it, in the post-training and in budgeted meta-steps (``latent_bpp``); every other
task runs the spatial latent and spends no random draws on the choice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..space import ARCH_PREFIX, Supernet, create_supernet
from ..spec import SupernetConfig
from ..tasks.base import TaskFamily
from .algorithms import MAML_MAX_INNER_STEPS, MetaAlgorithm, algorithm_names, create_algorithm
from .batched import task_updates
from .checkpoint import Checkpoint
from .config import MetaConfig, task_objective
from .distributed import TaskPlan
from .inner import (
    InnerConfig,
    LossConfig,
    TaskBatch,
    inner_loop,
    make_batch,
    task_input_shape,
    task_loss,
    uses_basis,
)
from .optstate import adam_state, restore_adam_state
from .posttrain import PostTrainer, draw_subnetwork
from .trainstate import Streams, capture_rng, restore_train_state, train_state_of
from .warmstart import check_parent, lr_factor, warm_config

__all__ = ["ALGORITHMS", "MAML_MAX_INNER_STEPS", "MetaConfig", "MetaTrainer",
           "evaluate_adaptation", "task_objective"]

#: the algorithms registered at import (see :func:`~metaae_edge.meta.algorithms.register_algorithm`)
ALGORITHMS = algorithm_names()


def _params(model: Supernet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@torch.no_grad()
def _query_loss(model: Supernet, params, batch: TaskBatch, tau: float, mode: str) -> float:
    return float(task_loss(model, params, batch.query(), LossConfig(tau, mode)))


def evaluate_adaptation(
    model: Supernet, params, batches: list[TaskBatch], inner: InnerConfig,
    learner: MetaAlgorithm | None = None,
) -> dict[str, float]:
    """Adapt to each task (``learner``'s adaptation, default the plain inner loop) and
    report the mean query loss, relaxed and discretised."""
    relaxed, hard = [], []
    for b in batches:
        adapted = (learner.adapt(params, b, inner) if learner is not None
                   else inner_loop(model, params, b, inner))
        relaxed.append(_query_loss(model, adapted, b, inner.tau_end, "softmax"))
        hard.append(_query_loss(model, adapted, b, inner.tau_end, "hard"))
    return {"query_loss": float(np.mean(relaxed)), "query_loss_hard": float(np.mean(hard))}


class MetaTrainer:
    """Meta-trains a :class:`~metaae_edge.space.Supernet` over a task family.

    Args:
        family: the task distribution (train and val splits are used).
        cfg: outer-loop settings; ``cfg.algorithm`` names the registered learner.
        supernet: search space; default the conv space for image families and
            :class:`SupernetConfig` for vector families.
        resume: a checkpoint to continue from (same family and configs), written by
            meta-train (a shipped builtin carries no training state). It also restores
            the process's global random streams (torch, numpy, Python), so the run
            continues exactly; :attr:`resume_notes` says why not, for older checkpoints.
        family_options: recorded in the checkpoint (how the family was created).
        plan: this process's share of each meta-batch (default all of it;
            :mod:`~metaae_edge.meta.distributed`).
        init_from: a gradient learner's checkpoint of the same family and space to
            warm-start from (:mod:`~metaae_edge.meta.warmstart`: its weights and
            architecture logits, its step; the outer step sizes ``cfg.init_lr_scale`` x
            base, cosine-decayed to ``cfg.meta_steps``); ignored with ``resume``.
    """

    def __init__(
        self,
        family: TaskFamily,
        cfg: MetaConfig,
        supernet: SupernetConfig | None = None,
        resume: Checkpoint | None = None,
        family_options: dict[str, Any] | None = None,
        plan: TaskPlan | None = None,
        init_from: Checkpoint | None = None,
    ):
        self.family_options = dict(family_options or {})
        if resume is not None:
            supernet, init_from = resume.supernet, None
        elif init_from is not None:
            supernet = check_parent(init_from, family.name, self.family_options, supernet)
            cfg = warm_config(cfg, init_from)
        self.family, self.cfg = family, cfg.validate()
        self.plan = plan or TaskPlan()
        if supernet is None:  # the space of the family's sample kind (images: conv)
            probe = family.sample("val", 0, objective=task_objective(cfg.objective, 0))
            supernet = probe.sample_kind.default_space()
        self.supernet_cfg = supernet
        torch.manual_seed(cfg.seed)
        self.model = create_supernet(self.supernet_cfg).to(cfg.device)
        self.model.search_prefilter = cfg.prefilter_choice == "meta"
        self.algorithm: MetaAlgorithm = create_algorithm(cfg.algorithm, self.model)
        self.algorithm.configure(cfg)  # the outer loss (meta/detect_loss.py)
        if resume is not None:  # the learner's tensors as the checkpoint has them
            self.algorithm.match_state(resume.learner)
        w_params = [p for n, p in self.model.named_parameters() if not n.startswith(ARCH_PREFIX)]
        a_params = list(self.model.arch.parameters())
        groups = [{"params": w_params, "lr": cfg.outer_lr_w},
                  {"params": a_params, "lr": cfg.outer_lr_a}]
        groups += self.algorithm.param_groups(cfg)  # a learner's own (e.g. step sizes)
        self.opt = torch.optim.Adam(groups)
        self._base_lr = [g["lr"] for g in self.opt.param_groups]  # the warm-start schedule's
        #: post-training shares the outer optimiser's weight group (the same tensors)
        self.posttrainer = PostTrainer(self.model, self.cfg, self.opt.param_groups[0]["params"],
                                       self.plan)
        self.step = 0
        self.metrics: list[dict[str, Any]] = []
        if resume is not None:
            self._restore(resume)
        elif init_from is not None:  # the parent's supernet and step; fresh learner and Adam
            self.model.load_state_dict({k: v.to(cfg.device) for k, v in init_from.state.items()})
            self.step, self.metrics = init_from.step, list(init_from.metrics)
        self._val = [
            make_batch(family.sample("val", i, objective=task_objective(cfg.objective, i)),
                       cfg.device, seed=i, image_basis=uses_basis(self.model))
            for i in self.plan.shard(cfg.val_tasks)
        ]
        #: why this resume is not exact (one line each; empty: exact, or a fresh run)
        self.resume_notes: list[str] = []
        if resume is not None:  # last: nothing after it may draw from the restored streams
            self.resume_notes = restore_train_state(
                resume, self.plan, cfg.meta_batch, posttraining=resume.step > cfg.meta_steps)

    # -- state ------------------------------------------------------------------------
    def _restore(self, ckpt: Checkpoint) -> None:
        if ckpt.step > 0 and not ckpt.optimizer:
            raise CheckpointError(
                f"{ckpt.source or 'this checkpoint'} was saved without training state (a "
                f"shipped builtin checkpoint); resume from a checkpoint written by meta-train")
        self.model.load_state_dict({k: v.to(self.cfg.device) for k, v in ckpt.state.items()})
        self.algorithm.load_state_dict(ckpt.learner)
        restore_adam_state(self.opt, self._named_parameters(), ckpt.optimizer,
                           int(ckpt.optimizer_meta.get("step", ckpt.step)), self.cfg.device)
        restore_adam_state(self.posttrainer.opt, self._weights(), ckpt.posttrain_optimizer, 0,
                           self.cfg.device)
        self.step, self.metrics = ckpt.step, list(ckpt.metrics)

    def _weights(self) -> dict[str, torch.nn.Parameter]:
        """The supernet's weights by name (no ``arch.*``): what post-training steps."""
        return {k: v for k, v in self.model.named_parameters() if not k.startswith(ARCH_PREFIX)}

    def _named_parameters(self) -> dict[str, torch.nn.Parameter]:
        """Everything the outer optimiser steps: the supernet's parameters, then the
        learner's own as ``learner.<name>``."""
        return {**dict(self.model.named_parameters()),
                **{f"learner.{k}": v for k, v in self.algorithm.named_parameters().items()}}

    def checkpoint(self, rng: list[Streams] | None = None) -> Checkpoint:
        """The current state as a :class:`Checkpoint` (a snapshot: copies of the tensors),
        resumable exactly: weights, both optimisers, learner state and the random streams
        (``rng``: every rank's, from :func:`~metaae_edge.meta.trainstate.gather_rng`;
        default this process's)."""
        opt, step = adam_state(self.opt, self._named_parameters())
        post, _ = adam_state(self.posttrainer.opt, self._weights())
        streams, train_state = train_state_of(rng or [capture_rng()], self.step,
                                              self.cfg.meta_batch)
        return Checkpoint(
            supernet=self.supernet_cfg,
            state={k: v.detach().clone() for k, v in self.model.state_dict().items()},
            family=self.family.name,
            family_options=self.family_options,
            meta_config=self.cfg.to_dict(),
            inner_config=self.cfg.inner.to_dict(),
            step=self.step,
            metrics=self.metrics,
            optimizer=opt,
            optimizer_meta={"step": step},
            learner={k: v.detach().clone() for k, v in self.algorithm.state_dict().items()},
            posttrain_optimizer=post,
            rng=streams,
            train_state=train_state,
        )

    # -- tasks ------------------------------------------------------------------------
    def latent_budget(self, task, index: int, choices: tuple[float, ...] | None = None) -> float:
        """The latent budget (values per sample) of training task ``index`` (0 = none),
        drawn from ``choices`` (default ``latent_bpp``) bits per input value."""
        choices = self.cfg.latent_bpp if choices is None else choices
        if not choices or task.objective != "reconstruct":
            return 0.0
        rng = np.random.default_rng([self.cfg.seed, index, 7919])
        bpp = float(rng.choice(np.asarray(choices, dtype=np.float64)))
        if bpp <= 0:
            return 0.0
        smallest = self.model.min_latent_size(task_input_shape(task))
        return max(bpp * task.input_dim / 8, float(smallest))

    def _train_task(self, index: int):
        """Training task ``index`` (its objective per ``cfg.objective``) and its batch."""
        task = self.family.sample("train", index,
                                  objective=task_objective(self.cfg.objective, index))
        return task, make_batch(task, self.cfg.device, seed=index,
                                image_basis=uses_basis(self.model))

    def _draw_subnetwork(self, alpha, shape: tuple[int, ...], budget: float,
                         gen: torch.Generator, tau: float = 1.0) -> dict[str, torch.Tensor]:
        """See :func:`~metaae_edge.meta.posttrain.draw_subnetwork`."""
        return draw_subnetwork(self.model, alpha, shape, budget, gen, tau)

    @property
    def total_steps(self) -> int:
        """Meta-steps + post-training steps: where :meth:`train` stops."""
        return self.cfg.meta_steps + self.cfg.posttrain_steps

    # -- steps ------------------------------------------------------------------------
    def posttrain_step(self) -> dict[str, float]:
        """One joint multi-task step of the supernet weights on sub-networks drawn from
        the meta-learned alpha (alpha itself untouched)."""
        loss = self.posttrainer.step(
            self.step, self._train_task,
            lambda task, index: self.latent_budget(task, index, self.cfg.posttrain_bpp))
        return self._finish_step(loss)

    def _finish_step(self, train_loss: float) -> dict[str, float]:
        """Count the step; meta-validate every ``val_every`` steps and at the end."""
        self.step += 1
        out = {"step": self.step, "train_query_loss": train_loss}
        if self.step % self.cfg.val_every == 0 or self.step == self.total_steps:
            val = self.plan.mean(self.validate(), len(self._val))  # sharded: all ranks'
            out.update({f"val_{k}": v for k, v in val.items()})
            self.metrics.append(out)
        return out

    def _task_inner(self, warm: bool, budget: float) -> InnerConfig:
        inner = replace(self.cfg.inner, latent_budget=budget)
        if warm:  # weights only, on sampled sub-networks
            inner = replace(inner, adapt_alpha=False)
        return self.algorithm.inner_config(inner)

    def train_step(self) -> dict[str, float]:
        """One outer update over ``meta_batch`` freshly sampled training tasks (a
        post-training step once ``step >= meta_steps``)."""
        cfg = self.cfg
        if self.step >= cfg.meta_steps:
            return self.posttrain_step()
        warm = self.step < cfg.warmup_steps
        mode = "gumbel" if warm else cfg.sampling
        slots = self.plan.slots(cfg.meta_batch)  # all of them, or this rank's share
        gens = self.plan.generators(cfg.seed * 1_000_003 + self.step, slots)
        params = _params(self.model)
        total = {k: torch.zeros_like(v) for k, v in params.items()}
        losses, learner_grads = [], []
        # each slot's update: the tasks' inner loops batched with vmap where that applies
        for budget, upd in task_updates(self, slots, warm, mode, gens, params):
            if upd.query_loss is not None:
                losses.append(upd.query_loss)
            learner_grads.append(upd.learner_grad)
            for k in total:
                if budget and k.startswith(ARCH_PREFIX):
                    # a budgeted task trains the weights of compressive sub-networks; the
                    # meta-learned alpha comes from unconstrained tasks only (otherwise it
                    # drifts to tiny latents: meta-val loss 0.10 -> 0.97 in our run)
                    continue
                total[k] += upd.grad[k].detach() / cfg.meta_batch
        learner = {name: sum(u[name] for u in learner_grads) / cfg.meta_batch
                   for name in self.algorithm.named_parameters()}
        loss = self.plan.all_reduce(total, learner, losses)  # sum over ranks (serial: as is)
        self.opt.zero_grad(set_to_none=True)
        for name, p in self.model.named_parameters():
            if warm and name.startswith(ARCH_PREFIX):
                continue  # alpha frozen during warm-up
            p.grad = total[name]
        for name, p in self.algorithm.named_parameters().items():
            p.grad = learner[name]
        factor = lr_factor(cfg, self.step)  # 1 but in a warm start (a function of the step)
        for group, base in zip(self.opt.param_groups, self._base_lr):
            group["lr"] = base * factor
        self.opt.step()
        return self._finish_step(loss)

    def validate(self) -> dict[str, float]:
        """Mean query loss after adaptation on the meta-validation tasks."""
        return evaluate_adaptation(self.model, _params(self.model), self._val, self.cfg.inner,
                                   self.algorithm)

    def train(self, on_step: Callable[[dict[str, float]], None] | None = None,
              on_checkpoint: Callable[[MetaTrainer], None] | None = None,
              checkpoint_every: int = 0) -> list[dict[str, Any]]:
        """Run until ``meta_steps + posttrain_steps``; returns the metric history."""
        while self.step < self.total_steps:
            m = self.train_step()
            if on_step:
                on_step(m)
            if on_checkpoint and checkpoint_every and self.step % checkpoint_every == 0:
                on_checkpoint(self)
        return self.metrics
