"""Meta-training from a :class:`~metaae_edge.tasks.Recipe` (what ``meta-train`` runs)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, SpecError
from ..tasks.recipes import Recipe, create_recipe
from .kinds import is_image_family
from .progress import NullProgress, Progress

__all__ = ["MetaTrainReport", "meta_train", "resume_conflicts"]

#: Recipe fields a resume takes from the recipe (continue, or extend the run); every other
#: field comes from the checkpoint and may only be given with the checkpoint's value.
EXTENDABLE = ("family", "meta_steps", "posttrain_steps", "posttrain_bpp", "posttrain_tau",
              "batch_tasks")


@dataclass
class MetaTrainReport:
    """What :func:`meta_train` wrote."""

    checkpoint: Path
    steps: int
    seconds: float
    val_query_loss_hard: float
    config: dict[str, Any] = field(default_factory=dict)
    #: why a resume was not exact (a checkpoint from before exact resume); empty otherwise
    notes: list[str] = field(default_factory=list)


def _checkpoint_values(ckpt) -> dict[str, Any]:
    """The checkpoint's value of every recipe field a resume cannot change."""
    from ..meta import MetaConfig
    from ..meta.algorithms import learner_of

    cfg = MetaConfig.from_dict(ckpt.meta_config)
    learner = learner_of(cfg.algorithm)
    return {"learner": learner,
            "algorithm": cfg.algorithm if learner == "gradient" else "reptile",
            "update_rule": cfg.algorithm if learner == "model" else "metasgd",
            "meta_batch": cfg.meta_batch,
            "inner_steps": cfg.inner.steps, "warmup_steps": cfg.warmup_steps,
            "prefilter_choice": cfg.prefilter_choice,
            "resource_lambda": cfg.inner.resource_lambda, "latent_bpp": tuple(cfg.latent_bpp),
            "arch_sampling": cfg.sampling, "objective": cfg.objective,
            "outer_loss": cfg.outer_loss, "rule_preset": cfg.rule_preset,
            "val_every": cfg.val_every, "seed": cfg.seed,
            "linear_bypass": ckpt.supernet.linear_bypass,
            "dense_latents": tuple(ckpt.supernet.dense_latents),
            "init_from": cfg.init_from, "init_lr_scale": cfg.init_lr_scale,
            "_meta_steps": cfg.meta_steps}


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value) or "(none)"
    return f"{value:g}" if isinstance(value, float) else str(value)


def resume_conflicts(recipe: Recipe, ckpt, given: Iterable[str]) -> list[str]:
    """``--flag VALUE (checkpoint: VALUE)`` for each field in ``given`` that differs from
    the checkpoint's (fields a resume may change, :data:`EXTENDABLE`, never conflict)."""
    have = _checkpoint_values(ckpt)
    out = []
    for name in (f.name for f in fields(Recipe)):
        if name not in given or name in EXTENDABLE:
            continue
        mine = getattr(recipe, name)
        if name == "warmup_steps" and mine < 0:  # "a quarter", of the checkpoint's run
            mine = have["_meta_steps"] // 4
        if mine != have[name]:
            flag = f"--{name.replace('_', '-')}"
            out.append(f"{flag} {_fmt(mine)} (checkpoint: {_fmt(have[name])})")
    return out


def _start(recipe: Recipe, out: Path, resume: bool, given: Iterable[str] | None):
    """The checkpoint to resume (checked against the recipe), or ``None``."""
    from ..meta import load_checkpoint

    if not resume:
        if out.exists():
            raise CheckpointError(f"{out} exists; pass --resume to continue it or choose "
                                  "another --out")
        return None
    if not out.exists():
        raise CheckpointError(f"--resume given but {out} does not exist; drop --resume")
    ckpt = load_checkpoint(out)
    if ckpt.family != recipe.family:
        raise CheckpointError(
            f"{out} was meta-trained on family {ckpt.family!r}, not {recipe.family!r}")
    if given is None:  # from Python: every field that differs from the family's recipe
        base = create_recipe(recipe.family)
        given = [f.name for f in fields(Recipe) if getattr(recipe, f.name) != getattr(
            base, f.name)]
    bad = resume_conflicts(recipe, ckpt, given)
    if bad:
        raise CheckpointError(f"--resume: {'; '.join(bad)} conflict with {out}; drop them "
                              "(a resume keeps the checkpoint's settings) or choose another --out")
    return ckpt


def _configs(recipe: Recipe, fam, ckpt, device: str):
    """(MetaConfig, SupernetConfig or None) of a fresh run or of a resume."""
    from ..meta import InnerConfig, MetaConfig
    from ..spec import SupernetConfig

    if ckpt is not None:  # continue, or extend: more meta-steps and/or post-training steps
        cfg = MetaConfig.from_dict({
            **ckpt.meta_config, "meta_steps": recipe.meta_steps,
            "posttrain_steps": recipe.posttrain_steps, "posttrain_bpp": recipe.posttrain_bpp,
            "posttrain_tau": recipe.posttrain_tau, "device": device,
            # a speed setting: the checkpoint's unless --batch-tasks on|off is given
            "batch_tasks": ckpt.meta_config.get("batch_tasks", "auto")
            if recipe.batch_tasks == "auto" else recipe.batch_tasks})
        return cfg, None
    cfg = MetaConfig(
        algorithm=recipe.meta_algorithm, meta_steps=recipe.meta_steps,
        meta_batch=recipe.meta_batch,
        warmup_steps=recipe.warmup, posttrain_steps=recipe.posttrain_steps,
        posttrain_tau=recipe.posttrain_tau, posttrain_bpp=recipe.posttrain_bpp,
        val_every=recipe.val_every, objective=recipe.objective, latent_bpp=recipe.latent_bpp,
        outer_loss=recipe.outer_loss, rule_preset=recipe.rule_preset,
        init_from=recipe.init_from, init_lr_scale=recipe.init_lr_scale,
        sampling=recipe.arch_sampling, prefilter_choice=recipe.prefilter_choice,
        seed=recipe.seed, device=device, batch_tasks=recipe.batch_tasks,
        inner=InnerConfig(steps=recipe.inner_steps, resource_lambda=recipe.resource_lambda))
    image = is_image_family(fam)
    if recipe.dense_latents:
        if not image:
            raise SpecError(f"--dense-latents is for image families (conv space); "
                            f"{recipe.family!r} is a vector family: drop --dense-latents")
        try:
            return cfg, SupernetConfig.conv(dense_latents=recipe.dense_latents,
                                            linear_bypass=recipe.linear_bypass)
        except SpecError as exc:
            raise SpecError(f"--dense-latents must be increasing positive integers, e.g. "
                            f"8,16,32,64, got {_fmt(recipe.dense_latents)!r}") from exc
    if recipe.linear_bypass:
        if image:
            raise SpecError(f"--linear-bypass on an image family ({recipe.family!r}) feeds "
                            f"the dense code: add --dense-latents, e.g. 8,16,32,64")
        return cfg, SupernetConfig(linear_bypass=True)
    return cfg, None


def meta_train(recipe: Recipe, out: str | Path, *, resume: bool = False,
               given: Iterable[str] | None = None, device: str = "cpu",
               progress: Progress | None = None,
               on_step: Callable[[dict[str, Any], int, float], None] | None = None
               ) -> MetaTrainReport:
    """Meta-train the searchable autoencoder (weights and architecture) per ``recipe``.

    Args:
        recipe: the run (:func:`~metaae_edge.tasks.create_recipe` gives a family's).
        out: checkpoint file to write (.safetensors); checkpointed every ``val_every`` steps.
        resume: continue ``out`` (it must exist); recipe fields in ``given`` must agree
            with the checkpoint, except the :data:`EXTENDABLE` ones. A checkpoint written
            by this version resumes exactly (killed and resumed ends as an uninterrupted
            run, :mod:`~metaae_edge.meta.trainstate`); an older one approximately
            (``MetaTrainReport.notes`` says so).
        given: the recipe fields the caller set explicitly (the CLI's flags and recipe
            file); default: those that differ from the family's registered recipe.
        device: ``cpu`` or ``cuda``.
        progress: shows the meta-steps.
        on_step: called with each step's metrics, the total step count and the seconds
            since training started.

    Raises:
        CheckpointError: ``out`` exists without ``resume``, is missing with it, or the
            checkpoint conflicts with the recipe (every conflicting field is named).
    """
    import torch

    from ..meta import MetaTrainer, load_checkpoint
    from ..meta.distributed import check_world, plan_from_env
    from ..tasks import create_family

    out = Path(out)
    torch.manual_seed(recipe.seed)
    plan = plan_from_env(device)  # one process; under torchrun, this rank's share
    # under torchrun --resume also starts a fresh run, so an elastic restart continues it
    ckpt = _start(recipe, out, resume and (out.exists() or not plan.distributed), given)
    fam = create_family(recipe.family, seed=recipe.seed)
    cfg, supernet = _configs(recipe, fam, ckpt, device)
    check_world(plan.world, cfg.meta_batch)
    # a warm start (meta/warmstart.py): a fresh run from a gradient learner's checkpoint
    parent = load_checkpoint(recipe.init_from) if recipe.init_from and ckpt is None else None
    trainer = MetaTrainer(fam, cfg, supernet=supernet, resume=ckpt,
                          family_options={"seed": recipe.seed}, plan=plan, init_from=parent)
    plan.check_in_sync(trainer)
    progress = progress or NullProgress()
    t0, last_val = time.perf_counter(), ""

    def step(m: dict[str, Any]) -> None:
        nonlocal last_val
        if "val_query_loss_hard" in m:
            last_val = f" val {m['val_query_loss_hard']:.4f}"
        if on_step is not None:
            on_step(m, trainer.total_steps, time.perf_counter() - t0)
        progress.update(m["step"], f"train {m['train_query_loss']:.4f}{last_val}")

    progress.start(f"meta-train {recipe.family} ({cfg.algorithm})", trainer.total_steps,
                   trainer.step)
    try:
        trainer.train(on_step=step, on_checkpoint=lambda t: plan.save(out, t),
                      checkpoint_every=recipe.val_every)
    finally:
        progress.stop()
    plan.save(out, trainer)  # rank 0 writes, the others wait
    plan.close()
    final = trainer.metrics[-1] if trainer.metrics else {}
    return MetaTrainReport(out, trainer.step, time.perf_counter() - t0,
                           final.get("val_query_loss_hard", float("nan")), cfg.to_dict(),
                           list(trainer.resume_notes))
