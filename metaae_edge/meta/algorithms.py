"""Meta-algorithms as swappable objects behind one small interface.

A :class:`MetaAlgorithm` turns the meta-parameters and one task into that task's
contribution to the outer update (:meth:`MetaAlgorithm.task_update`): a "gradient" per
parameter name that the outer optimiser (Adam) applies, averaged over the meta-batch, and
the task's query loss where the algorithm computes one. The training loop
(:class:`~metaae_edge.meta.MetaTrainer`) owns sampling, budgets, averaging and the
optimiser; the algorithm owns only what differs between learners.

* ``reptile``: move the meta-parameters towards each task's adapted parameters;
* ``fomaml``: first-order MAML, the query-loss gradient at the adapted parameters;
* ``maml``: second-order MAML, differentiating through the inner loop with nested
  :func:`torch.func.grad` (SGD inner loop; memory grows linearly with inner steps, so the
  inner steps are capped at :data:`MAML_MAX_INNER_STEPS`).

A learner with state of its own (e.g. learned per-parameter step sizes) returns it from
:meth:`~MetaAlgorithm.state_dict` (saved in the checkpoint as ``learner.<key>``) and
exposes trainable tensors through :meth:`~MetaAlgorithm.parameters` (the outer optimiser
steps them with the meta-parameters' group settings). Register a new one with
:func:`register_algorithm`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar

import torch
from torch.func import grad

from ..errors import CheckpointError, SpecError
from ..space import Supernet
from .detect_loss import detection_loss
from .inner import InnerConfig, Params, TaskBatch, inner_loop, task_loss

if TYPE_CHECKING:
    from .config import MetaConfig

__all__ = ["FOMAML", "LEARNERS", "MAML", "MAML_MAX_INNER_STEPS", "MetaAlgorithm", "Reptile",
           "TaskUpdate", "algorithm_names", "create_algorithm", "learner_from_checkpoint",
           "learner_of", "register_algorithm", "resolve_learner"]

MAML_MAX_INNER_STEPS = 10


@dataclass
class TaskUpdate:
    """One task's contribution to the outer step.

    ``grad``: by parameter name, the direction the outer optimiser descends (Reptile:
    ``theta - theta_adapted``; MAML: the query-loss gradient). ``adapted``: the task's
    adapted parameters, where the algorithm produced them detached (``None`` otherwise).
    ``query_loss``: the adapted query loss where computed (``None`` otherwise).
    ``learner_grad``: by name, the gradients of the learner's own parameters.
    """

    grad: Params
    adapted: Params | None = None
    query_loss: float | None = None
    #: gradients of the learner's own parameters (:meth:`MetaAlgorithm.named_parameters`)
    learner_grad: Params = field(default_factory=dict)


class MetaAlgorithm(ABC):
    """A gradient-, metric- or model-based meta-learner (one instance per training run).

    Args:
        model: the supernet being meta-trained (its structure; parameters come as dicts).
    """

    name: ClassVar[str] = ""
    #: named settings a run may pick (``MetaConfig.rule_preset``): name -> attributes
    PRESETS: ClassVar[dict[str, dict]] = {}
    #: whether the outer update is the gradient of a query loss (so a detection outer
    #: loss, ``MetaConfig.outer_loss``, can replace the reconstruction one)
    query_loss_gradient: ClassVar[bool] = False

    def __init__(self, model: Supernet):
        self.model = model
        #: ``MetaConfig.outer_loss``: what :meth:`_query_loss` differentiates
        self.outer_loss = "reconstruction"

    def configure(self, cfg: MetaConfig) -> None:
        """Take the run's settings the learner reads (the outer loss, a preset)."""
        self.outer_loss = cfg.outer_loss
        preset = getattr(cfg, "rule_preset", "")
        if preset:
            self.apply_preset(self.PRESETS[preset])

    def apply_preset(self, settings: dict) -> None:
        """Take a preset's settings (before the outer optimiser is built)."""
        for k, v in settings.items():
            setattr(self, k, v)

    @classmethod
    def check_config(cls, cfg: MetaConfig) -> None:
        """Raise :class:`~metaae_edge.errors.SpecError` for settings this learner refuses."""
        preset = getattr(cfg, "rule_preset", "")
        if preset and preset not in cls.PRESETS:
            raise SpecError(f"the {cls.name} learner has presets "
                            f"{', '.join(cls.PRESETS) or 'none'}, got {preset!r}")
        if cfg.outer_loss != "reconstruction" and not cls.query_loss_gradient:
            raise SpecError(f"outer_loss {cfg.outer_loss} needs a learner whose outer update "
                            f"is a query-loss gradient (--algorithm fomaml or maml); "
                            f"{cls.name} has none")

    def inner_config(self, inner: InnerConfig) -> InnerConfig:
        """The inner-loop settings this learner adapts with (default: as given)."""
        return inner

    def outer_lr(self, cfg: MetaConfig) -> float:
        """The outer step size of the learner's own tensors (default: the weights')."""
        return cfg.outer_lr_w

    def param_groups(self, cfg: MetaConfig) -> list[dict]:
        """The outer optimiser's groups of the learner's own tensors (default one, at
        :meth:`outer_lr`; none without tensors)."""
        params = self.parameters()
        return [{"params": params, "lr": self.outer_lr(cfg)}] if params else []

    def adapt(self, params: Params, batch: TaskBatch, inner: InnerConfig, *,
              on_step: Callable[[int, float], None] | None = None) -> Params:
        """Adapt ``params`` to a new task at adaptation time (no meta-gradient): the
        plain inner loop by default; a model-based learner runs its learned rule, a
        metric-based one retrieves a prototype first. Detached results."""
        return inner_loop(self.model, params, batch, inner, on_step=on_step)

    def describe_adaptation(self) -> dict:
        """What the last :meth:`adapt` did beyond the inner loop (for the report)."""
        return {}

    @abstractmethod
    def task_update(self, params: Params, batch: TaskBatch, inner: InnerConfig, mode: str,
                    generator: torch.Generator) -> TaskUpdate:
        """The task's outer-update contribution from meta-parameters ``params``.

        Args:
            params: the meta-parameters (detached copies), weights and ``arch.*`` logits.
            batch: the task (support set adapted on, query set scored).
            inner: inner-loop settings (step count, step sizes, penalties, budget).
            mode: how the inner loop relaxes the architecture (``softmax`` / ``gumbel``).
            generator: the meta-step's RNG (Gumbel noise), shared across its tasks.
        """

    def named_parameters(self) -> dict[str, torch.nn.Parameter]:
        """Trainable tensors of the learner itself, by name (none for Reptile / MAML);
        the outer optimiser steps them with :attr:`TaskUpdate.learner_grad`."""
        return {}

    def parameters(self) -> list[torch.nn.Parameter]:
        """The values of :meth:`named_parameters`."""
        return list(self.named_parameters().values())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The learner's own state, saved in the checkpoint (``learner.<key>``); by
        default its parameters."""
        return {k: v.detach() for k, v in self.named_parameters().items()}

    def match_state(self, state: dict[str, torch.Tensor]) -> None:
        """Shape the learner's own tensors after a checkpoint's ``state`` before the
        outer optimiser is built (e.g. Meta-SGD's optional per-step scales); default none."""
        return None

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` (default: copy into the learner's parameters)."""
        own = self.named_parameters()
        if set(state) != set(own):
            raise CheckpointError(f"the {self.name} learner has state {sorted(own) or 'none'}, "
                                  f"but the checkpoint carries {sorted(state) or 'none'}")
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v)

    def _query_loss(self, params: Params, batch: TaskBatch, inner: InnerConfig, mode: str,
                    generator: torch.Generator | None) -> torch.Tensor:
        if self.outer_loss != "reconstruction":
            return detection_loss(self.model, params, batch,
                                  inner.loss_config(inner.tau_end, mode), self.outer_loss,
                                  generator)
        return task_loss(self.model, params, batch.query(),
                         inner.loss_config(inner.tau_end, mode), generator=generator)

    def _report_loss(self, adapted: Params, batch: TaskBatch, inner: InnerConfig,
                     mode: str) -> float:
        # the training-loss figure: no penalties, and the global RNG (not the meta-step's
        # generator) for Gumbel noise, as it always was (keeps the draw order)
        with torch.no_grad():
            if self.outer_loss != "reconstruction":
                return float(detection_loss(self.model, adapted, batch,
                                            inner.loss_config(inner.tau_end, mode),
                                            self.outer_loss, penalties=False))
            return float(task_loss(self.model, adapted, batch.query(),
                                   replace(inner.loss_config(inner.tau_end, mode),
                                           resource_lambda=0.0, latent_budget=0.0)))


class Reptile(MetaAlgorithm):
    """Reptile: the outer "gradient" is ``theta - theta_adapted`` (Nichol et al., 2018).
    It has no outer loss, so ``outer_loss`` ranking / mixed are refused."""

    name = "reptile"

    def task_update(self, params, batch, inner, mode, generator):
        adapted = inner_loop(self.model, params, batch, inner, mode=mode, generator=generator)
        g = {k: params[k] - adapted[k] for k in params}
        return TaskUpdate(g, adapted, self._report_loss(adapted, batch, inner, mode))


class FOMAML(MetaAlgorithm):
    """First-order MAML: the query-loss gradient at the adapted parameters."""

    name = "fomaml"
    query_loss_gradient = True

    def task_update(self, params, batch, inner, mode, generator):
        adapted = inner_loop(self.model, params, batch, inner, mode=mode, generator=generator)
        g = grad(lambda p: self._query_loss(p, batch, inner, mode, generator))(adapted)
        return TaskUpdate(g, adapted, self._report_loss(adapted, batch, inner, mode))


class MAML(MetaAlgorithm):
    """Second-order MAML through an SGD inner loop (Finn et al., 2017)."""

    name = "maml"
    query_loss_gradient = True

    @classmethod
    def check_config(cls, cfg: MetaConfig) -> None:
        super().check_config(cfg)
        if cfg.inner.steps > MAML_MAX_INNER_STEPS:
            raise SpecError(
                f"second-order MAML keeps every inner step's graph in memory; use at most "
                f"{MAML_MAX_INNER_STEPS} inner steps (got {cfg.inner.steps}) or "
                f"--algorithm fomaml"
            )

    def inner_config(self, inner: InnerConfig) -> InnerConfig:
        return replace(inner, optimizer="sgd")

    def task_update(self, params, batch, inner, mode, generator):
        def outer(p: Params) -> torch.Tensor:
            adapted = inner_loop(self.model, p, batch, inner, mode=mode, first_order=False,
                                 generator=generator)
            loss = self._query_loss(adapted, batch, inner, mode, generator)
            return loss, loss.detach()

        # the differentiated query loss is also the reported one (no extra RNG draws)
        g, loss = grad(outer, has_aux=True)(params)
        return TaskUpdate(g, query_loss=float(loss))


_ALGORITHMS: dict[str, type[MetaAlgorithm]] = {}


def register_algorithm(cls: type[MetaAlgorithm]) -> type[MetaAlgorithm]:
    """Register a :class:`MetaAlgorithm` subclass under its ``name`` (usable as a
    decorator); ``MetaConfig(algorithm=name)`` then selects it."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute `name`")
    _ALGORITHMS[cls.name] = cls
    return cls


for _cls in (Reptile, FOMAML, MAML):
    register_algorithm(_cls)


def algorithm_names() -> tuple[str, ...]:
    """The registered algorithm names, in registration order."""
    return tuple(_ALGORITHMS)


def algorithm_class(name: str) -> type[MetaAlgorithm]:
    """The class registered as ``name``; :class:`SpecError` naming the choices otherwise."""
    try:
        return _ALGORITHMS[name]
    except KeyError:
        raise SpecError(f"algorithm must be one of {', '.join(_ALGORITHMS)}, "
                        f"got {name!r}") from None


def create_algorithm(name: str, model: Supernet, **options) -> MetaAlgorithm:
    """Instantiate the algorithm registered as ``name`` for ``model``."""
    return algorithm_class(name)(model, **options)


#: the learner families (``meta-train --learner``) -> their variants (registered algorithm
#: names; the first is the default). ``gradient`` picks its variant with ``--algorithm``,
#: ``model`` with ``--update-rule``; ``metric`` has one.
LEARNERS: dict[str, tuple[str, ...]] = {
    "gradient": ("reptile", "fomaml", "maml"),
    "model": ("metasgd", "lstm"),
    "metric": ("metric",),
}


def resolve_learner(learner: str, variant: str | None = None) -> str:
    """The registered algorithm of learner family ``learner`` and its ``variant``
    (``None``: the family's default); one-line :class:`SpecError` otherwise."""
    if learner not in LEARNERS:
        raise SpecError(f"--learner must be one of {', '.join(LEARNERS)}, got {learner!r}")
    choices = LEARNERS[learner]
    name = choices[0] if variant is None else variant
    if name not in choices:
        raise SpecError(f"the {learner} learner has variants {', '.join(choices)}, "
                        f"got {name!r}")
    return name


def learner_of(algorithm: str) -> str:
    """The learner family of a registered algorithm (``gradient`` for unlisted ones)."""
    return next((fam for fam, names in LEARNERS.items() if algorithm in names), "gradient")


def learner_from_checkpoint(model: Supernet, ckpt) -> MetaAlgorithm:
    """The checkpoint's meta-learner for ``model``, its ``learner.*`` state restored
    (checkpoints from before the learner families: the gradient learner they trained)."""
    meta = dict(ckpt.meta_config or {})
    algo = create_algorithm(meta.get("algorithm", "reptile"), model)
    algo.horizon = int((meta.get("inner") or {}).get("steps", 10))
    algo.outer_loss = str(meta.get("outer_loss", "reconstruction"))
    algo.match_state(ckpt.learner)
    algo.load_state_dict({k: v.to(next(model.parameters()).device)
                          for k, v in ckpt.learner.items()})
    return algo


# the model- and metric-based learners register themselves (they import this module)
from . import learned_rule as _learned_rule  # noqa: E402,F401
from . import lstm_rule as _lstm_rule  # noqa: E402,F401
from . import metasgd as _metasgd  # noqa: E402,F401
from . import metric as _metric  # noqa: E402,F401
