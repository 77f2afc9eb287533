"""``metaae-edge tasks`` and ``metaae-edge meta-train``."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ..errors import CheckpointError
from ._common import console, progress, require_torch

#: Default budgets per family, sized so that `meta-train --family NAME` finishes in a few
#: minutes on a 2-core CPU (see README for the measured times).
DEFAULT_META_STEPS = 400
#: Image families (conv space): each inner step costs ~10x an MLP step, so fewer, smaller
#: meta-batches; one checkpoint serves reconstruct/compression and denoising ("mixed").
_IMAGE_DEFAULTS: dict[str, object] = {
    "meta_steps": 300, "meta_batch": 2, "objective": "mixed",
    "posttrain_steps": 400, "posttrain_bpp": "0,0.5,1,2"}
FAMILY_DEFAULTS: dict[str, dict[str, object]] = {
    "digits-res": _IMAGE_DEFAULTS,
    "shapes": _IMAGE_DEFAULTS,
}


def tasks_cmd() -> None:
    """List the task families (and the checkpoints shipped with the package)."""
    from rich.console import Console
    from rich.table import Table

    from ..tasks import list_families

    table = Table(title="task families")
    table.add_column("family")
    table.add_column("description")
    for name, desc in list_families().items():
        table.add_row(name, desc)
    Console().print(table)
    try:
        from ..meta.checkpoint import builtin_checkpoints

        shipped = builtin_checkpoints()
    except ImportError:  # torch-free install: the checkpoints need the train extra
        shipped = {}
    if shipped:
        typer.echo("built-in checkpoints: " + ", ".join(f"builtin:{n}" for n in shipped))


def meta_train_cmd(
    family: str = typer.Option(..., "--family", "-f", help="Task family (`metaae-edge tasks`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint file to write (.safetensors)."),
    algorithm: str = typer.Option("reptile", help="reptile | fomaml | maml (second order)."),
    meta_steps: int | None = typer.Option(
        None, help=f"Outer (meta) steps (default {DEFAULT_META_STEPS}; 300 for image families)."),
    meta_batch: int | None = typer.Option(
        None, help="Tasks per meta-step (default 4; 2 for image families)."),
    inner_steps: int = typer.Option(10, help="Inner adaptation steps K per task."),
    warmup_steps: int = typer.Option(-1, help="Weights-only warm-up meta-steps (-1: a quarter)."),
    posttrain_steps: int | None = typer.Option(
        None, help="Joint multi-task post-training steps of the supernet weights on "
        "sub-networks drawn from the meta-learned architecture, after the meta-steps "
        "(default 0; 400 for image families)."),
    posttrain_tau: float = typer.Option(
        0.25, help="Temperature of the post-training draws from the meta-learned "
        "architecture (low: concentrate on the sub-networks adaptation picks)."),
    posttrain_bpp: str | None = typer.Option(
        None, help="Compression budgets (bits per input value, 0 = none) drawn per "
        "reconstruct task of the post-training (default none; 0,0.5,1,2 for image families)."),
    prefilter_choice: str = typer.Option(
        "adapt", help="Conv spaces: adapt (the input filter, none or a 3x3 median, is chosen "
        "per task at adaptation; meta-training runs the unfiltered path) | meta (meta-learn "
        "it too; measured worse, see docs/images.md)."),
    resource_lambda: float | None = typer.Option(
        None, help="Penalty weight on expected MACs (relative to the largest sub-network; "
        "for image families half MACs, half latent bytes); default 0.05."),
    latent_bpp: str | None = typer.Option(
        None, help="Compression budgets in bits per input value, one drawn per reconstruct "
        "training task (0 = none), e.g. 0,0.25,0.5,1 (experimental: measured worse on "
        "digits-res, see docs/images.md)."),
    arch_sampling: str = typer.Option(
        "softmax", help="softmax (annealed relaxation) | gumbel (sampled sub-networks)."),
    objective: str | None = typer.Option(
        None, help="reconstruct | denoise | anomaly | mixed (reconstruct and denoise tasks "
        "alternate); default reconstruct, mixed for image families."),
    val_every: int = typer.Option(50, help="Meta-validate (and checkpoint) every N steps."),
    seed: int = typer.Option(0, help="Seed (same seed, same checkpoint)."),
    device: str = typer.Option("cpu", help="cpu | cuda."),
    threads: int = typer.Option(1, help="torch CPU threads (1 is fastest for these nets)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from --out if it exists."),
    linear_bypass: bool = typer.Option(
        False, "--linear-bypass",
        help="MLP families: add a linear path initialised to each task's support-set PCA; "
        "the MLP learns a non-linear residual on top of it. Image families: the same for "
        "the dense code (needs --dense-latents)."),
    dense_latents: str = typer.Option(
        "", "--dense-latents",
        help="Image families: offer a dense code of these sizes (values per image, e.g. "
        "8,16,32,64) beside the spatial latent; trained by budgeted post-training tasks and "
        "searched by budgeted adaptations (--latent-bytes). Off by default: measured worse "
        "at 1 bit/pixel on digits-res (docs/images.md)."),
) -> None:
    """Meta-train the searchable autoencoder (weights and architecture) on a task family."""
    torch = require_torch(device, threads)
    from ..errors import SpecError
    from ..meta import InnerConfig, MetaConfig, MetaTrainer, load_checkpoint, save_checkpoint
    from ..spec import SupernetConfig
    from ..tasks import create_family

    torch.manual_seed(seed)
    ckpt = None
    if resume:
        if not out.exists():
            raise CheckpointError(f"--resume given but {out} does not exist; drop --resume")
        ckpt = load_checkpoint(out)
        if ckpt.family != family:
            raise CheckpointError(
                f"{out} was meta-trained on family {ckpt.family!r}, not {family!r}"
            )
    elif out.exists():
        raise CheckpointError(f"{out} exists; pass --resume to continue it or choose another --out")
    fam = create_family(family, seed=seed)
    defaults = {"meta_steps": DEFAULT_META_STEPS, "meta_batch": 4, "objective": "reconstruct",
                **FAMILY_DEFAULTS.get(family, {})}
    meta_steps = int(defaults["meta_steps"]) if meta_steps is None else meta_steps
    meta_batch = int(defaults["meta_batch"]) if meta_batch is None else meta_batch
    objective = str(defaults["objective"]) if objective is None else objective
    if posttrain_steps is None:
        posttrain_steps = int(defaults.get("posttrain_steps", 0))  # type: ignore[call-overload]
    if resource_lambda is None:
        resource_lambda = float(defaults.get("resource_lambda", 0.05))  # type: ignore[arg-type]

    def budgets(option: str, given: str | None) -> tuple[float, ...]:
        text = str(defaults.get(option.replace("-", "_"), "")) if given is None else given
        try:
            return tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise SpecError(f"--{option} must be comma-separated numbers, got {text!r}") \
                from None

    if prefilter_choice not in ("adapt", "meta"):
        raise SpecError(f"--prefilter-choice must be adapt or meta, got {prefilter_choice!r}")
    if posttrain_tau <= 0:
        raise SpecError(f"--posttrain-tau must be > 0, got {posttrain_tau:g}")
    bpp = budgets("latent-bpp", latent_bpp)
    post_bpp = budgets("posttrain-bpp", posttrain_bpp)
    cfg = MetaConfig(
        algorithm=algorithm,
        meta_steps=meta_steps,
        meta_batch=meta_batch,
        warmup_steps=meta_steps // 4 if warmup_steps < 0 else warmup_steps,
        posttrain_steps=posttrain_steps,
        posttrain_tau=posttrain_tau,
        posttrain_bpp=post_bpp,
        val_every=val_every,
        objective=objective,
        latent_bpp=bpp,
        sampling=arch_sampling,
        prefilter_choice=prefilter_choice,
        seed=seed,
        device=device,
        inner=InnerConfig(steps=inner_steps, resource_lambda=resource_lambda),
    )
    if ckpt is not None:
        # continue, or extend: more meta-steps and/or post-training steps than it was run for
        cfg = MetaConfig.from_dict({**ckpt.meta_config, "meta_steps": meta_steps,
                                    "posttrain_steps": posttrain_steps,
                                    "posttrain_bpp": post_bpp, "posttrain_tau": posttrain_tau,
                                    "device": device})
    supernet = None
    image = fam.sample("val", 0).image_shape is not None
    if dense_latents.strip() and ckpt is None:
        if not image:
            raise SpecError(f"--dense-latents is for image families (conv space); {family!r} "
                            f"is a vector family: drop --dense-latents")
        try:
            sizes = tuple(int(v) for v in dense_latents.split(",") if v.strip())
            supernet = SupernetConfig.conv(dense_latents=sizes, linear_bypass=linear_bypass)
        except (ValueError, SpecError) as exc:
            raise SpecError(f"--dense-latents must be increasing positive integers, e.g. "
                            f"8,16,32,64, got {dense_latents!r}") from exc
    elif linear_bypass and ckpt is None:
        if image:
            raise SpecError(f"--linear-bypass on an image family ({family!r}) feeds the dense "
                            f"code: add --dense-latents, e.g. 8,16,32,64")
        supernet = SupernetConfig(linear_bypass=True)
    trainer = MetaTrainer(fam, cfg, supernet=supernet, resume=ckpt,
                          family_options={"seed": seed})
    t0 = time.perf_counter()
    last_val = ""
    with progress(f"meta-train {family} ({cfg.algorithm})", trainer.total_steps) as (bar, tid):
        bar.update(tid, completed=trainer.step)

        def on_step(m: dict) -> None:
            nonlocal last_val
            if "val_query_loss_hard" in m:
                last_val = f" val {m['val_query_loss_hard']:.4f}"
                if not console.is_terminal:  # logs get a line per validation instead of a bar
                    console.print(f"step {m['step']}/{trainer.total_steps} train "
                                  f"{m['train_query_loss']:.4f}{last_val} "
                                  f"({time.perf_counter() - t0:.0f}s)")
            bar.update(tid, completed=m["step"],
                       info=f"train {m['train_query_loss']:.4f}{last_val}")

        trainer.train(on_step=on_step, on_checkpoint=lambda t: save_checkpoint(out, t.checkpoint()),
                      checkpoint_every=val_every)
    save_checkpoint(out, trainer.checkpoint())
    final = trainer.metrics[-1] if trainer.metrics else {}
    typer.echo(
        f"wrote {out} after {trainer.step} meta-steps in {time.perf_counter() - t0:.1f}s; "
        f"meta-val query loss (discretised) {final.get('val_query_loss_hard', float('nan')):.4f}"
    )


def register(app: typer.Typer) -> None:
    app.command("tasks")(tasks_cmd)
    app.command("meta-train")(meta_train_cmd)
