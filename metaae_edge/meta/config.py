"""The outer-loop settings of a meta-training run (:class:`MetaConfig`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import SpecError
from ..tasks.base import OBJECTIVES
from .algorithms import algorithm_class
from .detect_loss import OUTER_LOSSES
from .inner import InnerConfig

__all__ = ["MetaConfig", "task_objective"]


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
    #: the outer loss of a query-gradient learner (fomaml, maml): ``reconstruction`` (the
    #: query reconstruction loss), ``ranking`` (a pairwise AUC surrogate on the exported
    #: score of a query holding anomalies; ``anomaly`` objective) or ``mixed`` (both);
    #: ``meta/detect_loss.py``
    outer_loss: str = "reconstruction"
    #: a named setting of the learner (``""``: its defaults); Meta-SGD: ``k5``
    #: (``meta/metasgd.py`` ``PRESETS``), chosen on meta-validation for K_train = 5
    rule_preset: str = ""
    #: a warm start (``meta/warmstart.py``): the gradient-learner checkpoint the supernet
    #: started from (path as given, and its sha256), its step (this run's first) and the
    #: scale of the outer step sizes, cosine-decayed from ``init_step`` to ``meta_steps``;
    #: ``""``: a fresh run
    init_from: str = ""
    init_from_sha256: str = ""
    init_step: int = 0
    init_lr_scale: float = 1.0
    seed: int = 0
    device: str = "cpu"
    inner: InnerConfig = field(default_factory=InnerConfig)
    #: run a meta-batch's inner loops as one vmap (meta/batched.py): ``auto`` | ``on``
    #: (wherever vmap applies) | ``off`` (one task after the other)
    batch_tasks: str = "auto"

    def validate(self) -> MetaConfig:
        algorithm = algorithm_class(self.algorithm)  # SpecError naming the choices
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
        if self.outer_loss not in OUTER_LOSSES:
            raise SpecError(f"outer_loss must be one of {', '.join(OUTER_LOSSES)}, got "
                            f"{self.outer_loss!r}")
        if self.outer_loss != "reconstruction" and self.objective != "anomaly":
            raise SpecError(f"outer_loss {self.outer_loss} ranks anomalies in the query: it "
                            f"needs objective anomaly, got {self.objective!r}")
        if self.inner.steps < 1:
            raise SpecError(f"inner steps must be >= 1, got {self.inner.steps}")
        if self.batch_tasks not in ("auto", "on", "off"):
            raise SpecError(f"batch_tasks must be auto, on or off, got {self.batch_tasks!r}")
        if self.init_lr_scale <= 0:
            raise SpecError(f"init_lr_scale must be > 0, got {self.init_lr_scale:g}")
        if self.init_from and self.meta_steps <= self.init_step:
            raise SpecError(f"--meta-steps of a warm start is the total, counted from the "
                            f"parent checkpoint's step {self.init_step}: give more than "
                            f"{self.init_step}, got {self.meta_steps}")
        algorithm.check_config(self)
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
