"""Gradient-based meta-learners over weights and architecture (MetaNAS recipe).

* ``reptile``: move the meta-parameters towards each task's adapted parameters;
* ``fomaml``: first-order MAML, the query-loss gradient at the adapted parameters;
* ``maml``: second-order MAML, differentiating through the inner loop with nested
  :func:`torch.func.grad` (SGD inner loop; memory grows linearly with inner steps, so the
  inner steps are capped at :data:`MAML_MAX_INNER_STEPS`).

Weights and ``alpha`` get separate outer step sizes; the first ``warmup_steps`` meta-steps
train weights only, on Gumbel-sampled sub-networks so every path gets trained; the inner
temperature is annealed over the inner steps so that adapted weights already work under
a (nearly) hard architecture; an optional resource penalty ``lambda * E[MACs]`` steers
``alpha`` towards small networks.

Optionally, ``posttrain_steps`` of joint multi-task training follow (the "train the found
architectures" stage of NAS, over a distribution of them): per task, one Adam step on the
pooled support and query sets under a hard sub-network drawn from the meta-learned
``alpha`` (with a latent budget drawn from ``posttrain_bpp`` for reconstruct tasks, a
sub-network that fits it) and under the relaxed mixture at a random temperature. The
adaptation later discretises to one sub-network, so those are the weights that have to be
good; meta-learning alone leaves them under-trained (see docs/images.md).

Conv spaces with a dense bottleneck (``SupernetConfig.dense_latents``): the bottleneck is
searched where a latent budget asks for compression, so only budgeted (reconstruct) tasks
draw it, in the post-training and in budgeted meta-steps (``latent_bpp``); every other
task runs the spatial latent and spends no random draws on the choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import grad

from ..errors import SpecError
from ..space import ConvSupernet, Supernet, create_supernet, expected_latent_size
from ..space.conv import allowed_depths, bottleneck_search
from ..space.mlp import ARCH_PREFIX, alpha_of, arch_probs
from ..spec import SupernetConfig
from ..tasks.base import OBJECTIVES, TaskFamily
from .checkpoint import Checkpoint
from .inner import InnerConfig, TaskBatch, inner_loop, make_batch, task_loss, uses_basis

__all__ = ["ALGORITHMS", "MetaConfig", "MetaTrainer", "evaluate_adaptation"]

ALGORITHMS = ("reptile", "fomaml", "maml")
MAML_MAX_INNER_STEPS = 10


@dataclass(frozen=True)
class MetaConfig:
    """Outer-loop settings of a meta-training run."""

    algorithm: str = "reptile"
    meta_steps: int = 600
    meta_batch: int = 4
    outer_lr_w: float = 1e-3
    outer_lr_a: float = 3e-3
    warmup_steps: int = 150
    val_every: int = 100
    val_tasks: int = 8
    #: the task objective, or ``mixed``: reconstruct and denoise tasks alternate (one
    #: checkpoint that adapts to either; used for the image families).
    objective: str = "reconstruct"
    #: how the inner loop sees the architecture after warm-up: ``softmax`` (annealed
    #: relaxation, DARTS/MetaNAS) or ``gumbel`` (sampled sub-networks, SNAS/GDAS-style).
    sampling: str = "softmax"
    #: compression budgets, in bits per input value of the int8 latent, drawn per
    #: ``reconstruct`` training task (0 = no budget): the supernet then learns weights
    #: that work at every compression level, not only at the one alpha prefers (budgeted
    #: tasks update the weights only, never the meta-learned alpha)
    latent_bpp: tuple[float, ...] = ()
    #: joint multi-task post-training steps of the supernet weights after the meta-steps,
    #: on sub-networks drawn from the meta-learned alpha (0 = none; ``meta_batch`` tasks
    #: each; see the module docstring). They count towards ``MetaTrainer.step`` but not
    #: ``meta_steps``; their Adam state is not checkpointed (resuming inside the
    #: post-training restarts its moments).
    posttrain_steps: int = 0
    #: peak step size of the post-training (Adam), cosine-decayed to 0 over its steps
    posttrain_lr: float = 3e-3
    #: temperature of the post-training draws, ``softmax(alpha / tau)``: the meta-learned
    #: logits are flat after a few hundred meta-steps (top choices at 0.3-0.4), so drawing
    #: at tau = 1 spreads the weights over every sub-network; a low tau concentrates them
    #: on the ones the adaptation picks
    posttrain_tau: float = 0.25
    #: compression budgets (bits per input value of the int8 latent; 0 = none) drawn per
    #: reconstruct task of the post-training: the drawn sub-network fits the budget, so
    #: the compressive sub-networks a ``--latent-bytes`` adaptation picks are trained too
    posttrain_bpp: tuple[float, ...] = ()
    #: conv spaces with input-filter choices (``SupernetConfig.prefilters``): ``adapt``
    #: (meta- and post-training run the unfiltered path and leave the filter logits at
    #: zero, so the choice is made per task at adaptation; the weights match a space
    #: without filters exactly) or ``meta`` (the filter is meta-learned with the rest;
    #: measured worse on digits-res denoising at unseen resolutions, docs/images.md)
    prefilter_choice: str = "adapt"
    seed: int = 0
    device: str = "cpu"
    inner: InnerConfig = field(default_factory=InnerConfig)

    def validate(self) -> MetaConfig:
        if self.algorithm not in ALGORITHMS:
            raise SpecError(
                f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}"
            )
        for name in ("meta_steps", "meta_batch", "val_every"):
            if getattr(self, name) < 1:
                raise SpecError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.posttrain_steps < 0 or self.posttrain_lr <= 0 or self.posttrain_tau <= 0:
            raise SpecError(f"posttrain_steps must be >= 0, posttrain_lr and posttrain_tau "
                            f"> 0, got {self.posttrain_steps}, {self.posttrain_lr} and "
                            f"{self.posttrain_tau}")
        if any(b < 0 for b in (*self.latent_bpp, *self.posttrain_bpp)):
            raise SpecError("compression budgets (bits per value) must be >= 0")
        if self.objective not in (*OBJECTIVES, "mixed"):
            raise SpecError(f"objective must be one of {', '.join(OBJECTIVES)} or mixed, "
                            f"got {self.objective!r}")
        if self.prefilter_choice not in ("adapt", "meta"):
            raise SpecError(f"prefilter_choice must be adapt or meta, got "
                            f"{self.prefilter_choice!r}")
        if self.sampling not in ("softmax", "gumbel"):
            raise SpecError(f"sampling must be softmax or gumbel, got {self.sampling!r}")
        if self.inner.steps < 1:
            raise SpecError(f"inner steps must be >= 1, got {self.inner.steps}")
        if self.algorithm == "maml" and self.inner.steps > MAML_MAX_INNER_STEPS:
            raise SpecError(
                f"second-order MAML keeps every inner step's graph in memory; use at most "
                f"{MAML_MAX_INNER_STEPS} inner steps (got {self.inner.steps}) or --algorithm fomaml"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inner"] = self.inner.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetaConfig:
        d = dict(d)
        for key in ("latent_bpp", "posttrain_bpp"):
            if key in d:
                d[key] = tuple(d[key] or ())
        inner = InnerConfig(**d.pop("inner", {}))
        return cls(inner=inner, **d)


def task_objective(objective: str, index: int) -> str:
    """The objective of task ``index``: ``mixed`` alternates reconstruct and denoise."""
    if objective == "mixed":
        return ("reconstruct", "denoise")[index % 2]
    return objective


def _params(model: Supernet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@torch.no_grad()
def _query_loss(model: Supernet, params, batch: TaskBatch, tau: float, mode: str) -> float:
    return float(task_loss(model, params, batch.query_in, batch.query_target, batch.loss,
                           tau, mode, basis=batch.basis))


def evaluate_adaptation(
    model: Supernet, params, batches: list[TaskBatch], inner: InnerConfig
) -> dict[str, float]:
    """Adapt to each task and report the mean query loss, relaxed and discretised."""
    relaxed, hard = [], []
    for b in batches:
        adapted = inner_loop(model, params, b, inner)
        relaxed.append(_query_loss(model, adapted, b, inner.tau_end, "softmax"))
        hard.append(_query_loss(model, adapted, b, inner.tau_end, "hard"))
    return {"query_loss": float(np.mean(relaxed)), "query_loss_hard": float(np.mean(hard))}


class MetaTrainer:
    """Meta-trains an :class:`Supernet` over a task family.

    Args:
        family: the task distribution (train and val splits are used).
        cfg: outer-loop settings.
        supernet: search space; default :class:`SupernetConfig` with the family's
            ``max_input_dim`` raised to at least 128.
        resume: a checkpoint to continue from (same family and configs).
    """

    def __init__(
        self,
        family: TaskFamily,
        cfg: MetaConfig,
        supernet: SupernetConfig | None = None,
        resume: Checkpoint | None = None,
        family_options: dict[str, Any] | None = None,
    ):
        self.family, self.cfg = family, cfg.validate()
        self.family_options = dict(family_options or {})
        if resume is not None:
            supernet = resume.supernet
        if supernet is None:  # image families get the conv space, vector families the MLP
            probe = family.sample("val", 0, objective=task_objective(cfg.objective, 0))
            supernet = SupernetConfig.conv() if probe.image_shape is not None else SupernetConfig()
        self.supernet_cfg = supernet
        torch.manual_seed(cfg.seed)
        self.model = create_supernet(self.supernet_cfg).to(cfg.device)
        if hasattr(self.model, "search_prefilter"):
            self.model.search_prefilter = cfg.prefilter_choice == "meta"
        w_params = [p for n, p in self.model.named_parameters() if not n.startswith(ARCH_PREFIX)]
        a_params = list(self.model.arch.parameters())
        self.opt = torch.optim.Adam(
            [{"params": w_params, "lr": cfg.outer_lr_w}, {"params": a_params, "lr": cfg.outer_lr_a}]
        )
        self.step = 0
        self._post_opt: torch.optim.Optimizer | None = None
        self.metrics: list[dict[str, Any]] = []
        if resume is not None:
            self._restore(resume)
        self._val = [
            make_batch(family.sample("val", i, objective=task_objective(cfg.objective, i)),
                       cfg.device, seed=i, image_basis=uses_basis(self.model))
            for i in range(cfg.val_tasks)
        ]

    # -- state ------------------------------------------------------------------------
    def _restore(self, ckpt: Checkpoint) -> None:
        self.model.load_state_dict({k: v.to(self.cfg.device) for k, v in ckpt.state.items()})
        names = [n for n, _ in self.model.named_parameters()]
        for i, name in enumerate(names):
            if f"{i}.exp_avg" in ckpt.optimizer:
                p = dict(self.model.named_parameters())[name]
                self.opt.state[p] = {
                    "step": torch.tensor(float(ckpt.optimizer_meta.get("step", ckpt.step))),
                    "exp_avg": ckpt.optimizer[f"{i}.exp_avg"].to(self.cfg.device),
                    "exp_avg_sq": ckpt.optimizer[f"{i}.exp_avg_sq"].to(self.cfg.device),
                }
        self.step, self.metrics = ckpt.step, list(ckpt.metrics)

    def checkpoint(self) -> Checkpoint:
        """The current state as a :class:`Checkpoint` (resumable)."""
        opt: dict[str, torch.Tensor] = {}
        step = 0
        for i, (_, p) in enumerate(self.model.named_parameters()):
            st = self.opt.state.get(p)
            if st:
                opt[f"{i}.exp_avg"], opt[f"{i}.exp_avg_sq"] = st["exp_avg"], st["exp_avg_sq"]
                step = int(st["step"])
        return Checkpoint(
            supernet=self.supernet_cfg,
            state={k: v.detach() for k, v in self.model.state_dict().items()},
            family=self.family.name,
            family_options=self.family_options,
            meta_config=self.cfg.to_dict(),
            inner_config=self.cfg.inner.to_dict(),
            step=self.step,
            metrics=self.metrics,
            optimizer=opt,
            optimizer_meta={"step": step},
        )

    # -- one meta-step ----------------------------------------------------------------
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
        shape = tuple(task.image_shape) if task.image_shape is not None else (task.input_dim,)
        smallest = (self.model.min_latent_size(shape) if hasattr(self.model, "min_latent_size")
                    else min(self.supernet_cfg.latent_choices))
        return max(bpp * task.input_dim / 8, float(smallest))

    def _task_grad(self, params, batch: TaskBatch, warm: bool, gen: torch.Generator,
                   budget: float = 0.0):
        cfg, inner = self.cfg, replace(self.cfg.inner, latent_budget=budget)
        if warm:  # weights only, on sampled sub-networks
            inner = replace(inner, adapt_alpha=False)
        mode = "gumbel" if warm else cfg.sampling
        if cfg.algorithm == "maml":
            inner = replace(inner, optimizer="sgd")

            def outer(p):
                adapted = inner_loop(self.model, p, batch, inner, mode=mode, first_order=False,
                                     generator=gen)
                return task_loss(self.model, adapted, batch.query_in, batch.query_target,
                                 batch.loss, inner.tau_end, mode, inner.resource_lambda, gen,
                                 batch.basis, inner.latent_budget)

            g = grad(outer)(params)
            adapted = None
        else:
            adapted = inner_loop(self.model, params, batch, inner, mode=mode, generator=gen)
            if cfg.algorithm == "reptile":
                g = {k: params[k] - adapted[k] for k in params}
            else:
                g = grad(lambda p: task_loss(self.model, p, batch.query_in, batch.query_target,
                                             batch.loss, inner.tau_end, mode,
                                             inner.resource_lambda, gen, batch.basis,
                                             inner.latent_budget))(adapted)
        return g, adapted

    def _train_task(self, index: int):
        """Training task ``index`` (its objective per ``cfg.objective``) and its batch."""
        task = self.family.sample("train", index,
                                  objective=task_objective(self.cfg.objective, index))
        return task, make_batch(task, self.cfg.device, seed=index,
                                image_basis=uses_basis(self.model))

    @property
    def total_steps(self) -> int:
        """Meta-steps + post-training steps: where :meth:`train` stops."""
        return self.cfg.meta_steps + self.cfg.posttrain_steps

    def _draw_subnetwork(self, alpha, shape: tuple[int, ...], budget: float,
                         gen: torch.Generator, tau: float = 1.0) -> dict[str, torch.Tensor]:
        """A hard sub-network drawn from ``softmax(alpha / tau)``; with a budget, one whose
        latent fits it (rejection, then the smallest latent as a fallback)."""
        alpha = self.model.constrain_alpha(alpha, shape)
        probs = arch_probs(alpha, tau=tau, mode="sample", generator=gen)
        if not budget:
            return probs
        for _ in range(256):
            if float(expected_latent_size(self.model, probs, shape)) <= budget:
                return probs
            probs = arch_probs(alpha, tau=tau, mode="sample", generator=gen)
        # fallback: the smallest latent (fewest channels; conv: the deepest allowed level)
        probs["latent"] = F.one_hot(torch.tensor(0), len(alpha["latent"])).to(probs["latent"])
        if "bottleneck" in probs:  # the spatial latent
            probs["bottleneck"] = F.one_hot(torch.tensor(0), len(alpha["bottleneck"])).to(
                probs["bottleneck"])
        if isinstance(self.model, ConvSupernet):
            deepest = max(allowed_depths(shape[-2], shape[-1], self.model.cfg.max_depth))
            probs["depth"] = F.one_hot(torch.tensor(deepest - 1), len(alpha["depth"])).to(
                probs["depth"])
        return probs

    def posttrain_step(self) -> dict[str, float]:
        """One joint multi-task step of the supernet weights on sub-networks drawn from
        the meta-learned alpha (alpha itself untouched)."""
        cfg, inner = self.cfg, self.cfg.inner
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        if self._post_opt is None:  # the supernet weights (the outer optimiser's group 0)
            self._post_opt = torch.optim.Adam(self.opt.param_groups[0]["params"],
                                              lr=cfg.posttrain_lr)
        frac = (self.step - cfg.meta_steps) / max(cfg.posttrain_steps, 1)
        for group in self._post_opt.param_groups:  # cosine decay: settled final weights
            group["lr"] = cfg.posttrain_lr * 0.5 * (1 + math.cos(math.pi * frac))
        self._post_opt.zero_grad(set_to_none=True)
        params = dict(self.model.named_parameters())
        alpha = {k: v.detach() for k, v in alpha_of(params).items()}
        losses = []
        for b in range(cfg.meta_batch):
            index = self.step * cfg.meta_batch + b
            task, batch = self._train_task(index)
            x = torch.cat([batch.support_in, batch.query_in])
            y = torch.cat([batch.support_target, batch.query_target])
            budget = self.latent_budget(task, index, cfg.posttrain_bpp)
            with bottleneck_search(self.model, budget > 0):
                hard = self._draw_subnetwork(alpha, tuple(x.shape), budget, gen,
                                             cfg.posttrain_tau)
                # and the relaxed mixture the adaptation starts from, at a random
                # temperature between the inner loop's first and last (log-uniform)
                u = float(torch.rand((), generator=gen))
                tau = inner.tau_end * (inner.tau_start / inner.tau_end) ** u
                loss = (task_loss(self.model, params, x, y, batch.loss, 1.0,
                                  basis=batch.basis, probs=hard)
                        + task_loss(self.model, params, x, y, batch.loss, tau, "softmax",
                                    basis=batch.basis)) / 2
            (loss / cfg.meta_batch).backward()
            losses.append(float(loss.detach()))
        for name, p in self.model.named_parameters():
            if name.startswith(ARCH_PREFIX):
                p.grad = None
        self._post_opt.step()
        return self._finish_step(float(np.mean(losses)))

    def _finish_step(self, train_loss: float) -> dict[str, float]:
        """Count the step; meta-validate every ``val_every`` steps and at the end."""
        self.step += 1
        out = {"step": self.step, "train_query_loss": train_loss}
        if self.step % self.cfg.val_every == 0 or self.step == self.total_steps:
            out.update({f"val_{k}": v for k, v in self.validate().items()})
            self.metrics.append(out)
        return out

    def train_step(self) -> dict[str, float]:
        """One outer update over ``meta_batch`` freshly sampled training tasks (a
        post-training step once ``step >= meta_steps``)."""
        cfg = self.cfg
        if self.step >= cfg.meta_steps:
            return self.posttrain_step()
        warm = self.step < cfg.warmup_steps
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        params = _params(self.model)
        total = {k: torch.zeros_like(v) for k, v in params.items()}
        losses = []
        for b in range(cfg.meta_batch):
            index = self.step * cfg.meta_batch + b
            task, batch = self._train_task(index)
            budget = self.latent_budget(task, index)
            with bottleneck_search(self.model, budget > 0):
                g, adapted = self._task_grad(params, batch, warm, gen, budget)
                if adapted is not None:
                    losses.append(_query_loss(self.model, adapted, batch, cfg.inner.tau_end,
                                              "gumbel" if warm else cfg.sampling))
            for k in total:
                if budget and k.startswith(ARCH_PREFIX):
                    # a budgeted task trains the weights of compressive sub-networks; the
                    # meta-learned alpha comes from unconstrained tasks only (otherwise it
                    # drifts to tiny latents: meta-val loss 0.10 -> 0.97 in our run)
                    continue
                total[k] += g[k].detach() / cfg.meta_batch
        self.opt.zero_grad(set_to_none=True)
        for name, p in self.model.named_parameters():
            if warm and name.startswith(ARCH_PREFIX):
                continue  # alpha frozen during warm-up
            p.grad = total[name]
        self.opt.step()
        return self._finish_step(float(np.mean(losses)) if losses else float("nan"))

    def validate(self) -> dict[str, float]:
        """Mean query loss after adaptation on the meta-validation tasks."""
        return evaluate_adaptation(self.model, _params(self.model), self._val, self.cfg.inner)

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
